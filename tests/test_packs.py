"""Packs: a source decoded once into a memory-mapped folder; folders packed into the cache and reused."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.data import batches, folders, loading, packs
from gankit.data import loading as data
from gankit.errors import GankitError
from gankit.quality import classifier
from gankit.run.metrics_log import MetricsFile
from gankit.training.launch import train

from .conftest import children, tiny_config


def _digits_folder(root: Path, n: int = 60, size: int = 28, classes: int = 3, rgb_at: int | None = None) -> Path:
    """n small PNGs, one subfolder per class; the image at index rgb_at (if any) in color."""
    rng = np.random.default_rng(0)
    for i in range(n):
        k = i % classes
        pixels = rng.integers(0, 60, (size + 4, size), dtype=np.uint8)
        pixels[4 + 6 * k:10 + 6 * k, 5:20] = 220  # a bar whose height says the class
        image = Image.fromarray(pixels, "L")
        if i == rgb_at:
            image = Image.merge("RGB", (image, image.point(lambda v: v // 2), image))
        path = root / f"class{k}" / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path)
    return root


def _cache_packs() -> list[Path]:
    home = Path(os.environ["GANKIT_CACHE_DIR"]) / "packs"
    return sorted(home.iterdir()) if home.is_dir() else []


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_a_folder_pack_holds_what_each_file_decodes_to(tmp_path, cache):
    root = _digits_folder(tmp_path / "imgs", n=12, rgb_at=7)
    ds = loading.load(f"folder:{root}", image_size=20)
    assert ds.images.shape == (12, 3, 20, 20) and ds.pack is not None  # one color image: the set is RGB
    paths = folders.list_images(root.resolve())
    for i, p in enumerate(paths):
        one = folders.read_image(p, 20)
        assert torch.equal(ds.images[i], one.expand(3, -1, -1)), p  # gray before and after the color one
    assert ds.classes == ["class0", "class1", "class2"]
    assert ds.labels.tolist() == [int(p.parent.name[-1]) for p in paths]
    gray = loading.load(f"folder:{root}", image_size=20, channels=1)
    assert gray.images.shape == (12, 1, 20, 20)


def test_many_files_are_decoded_by_worker_processes_into_the_same_pack(tmp_path, cache, monkeypatch):
    root = _digits_folder(tmp_path / "imgs", n=3 * folders.CHUNK + 5)
    parallel = folders.pack_folder(root, tmp_path / "parallel", 16, 0)
    monkeypatch.setattr(folders.os, "sched_getaffinity", lambda _pid: {0})  # one worker: decoded in-process
    serial = folders.pack_folder(root, tmp_path / "serial", 16, 0)
    a, b = packs.open_pack(parallel), packs.open_pack(serial)
    assert a.images.shape == (3 * folders.CHUNK + 5, 1, 16, 16)
    assert np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert a.meta["fingerprint"] == b.meta["fingerprint"]


def test_the_second_use_of_a_folder_decodes_nothing_and_a_changed_folder_is_packed_again(tmp_path, cache, monkeypatch):
    root = _digits_folder(tmp_path / "imgs", n=20)
    first = loading.load(f"folder:{root}", image_size=28)
    assert "packed into" in first.cache and len(_cache_packs()) == 1

    real_decode = folders.decode_all
    calls = []
    monkeypatch.setattr(folders, "decode_all", lambda *a: calls.append(a) or real_decode(*a))
    again = loading.load(f"folder:{root}", image_size=28)
    assert calls == [] and "reused the packed copy" in again.cache
    assert torch.equal(first.images, again.images) and again.fingerprint == first.fingerprint

    one = sorted(root.rglob("*.png"))[3]
    Image.fromarray(np.full((28, 28), 255, np.uint8), "L").save(one)
    os.utime(one, ns=(10**18, 10**18))  # a new mtime even on a coarse clock
    changed = loading.load(f"folder:{root}", image_size=28)
    assert len(calls) == 1 and "packed into" in changed.cache
    assert changed.fingerprint != first.fingerprint and int(changed.images[3].float().mean()) == 255
    assert len(_cache_packs()) == 1  # the superseded pack was deleted
    loading.load(f"folder:{root}", image_size=32)  # another size: its own pack beside
    assert len(_cache_packs()) == 2


def test_gankit_data_says_whether_the_folder_came_from_the_cache(tmp_path, cache, capsys):
    root = _digits_folder(tmp_path / "imgs", n=10)
    assert main(["data", f"folder:{root}", "-o", str(tmp_path / "g.png")]) == 0
    assert "cache: packed into" in capsys.readouterr().out
    assert main(["data", f"folder:{root}", "-o", str(tmp_path / "g.png"), "--force"]) == 0
    assert "cache: reused the packed copy in" in capsys.readouterr().out


def test_pack_command_round_trips_mnist5k(tmp_path, capsys):
    dest = tmp_path / "mnist.pack"
    assert main(["data", "mnist5k", "--pack", str(dest), "-o", str(tmp_path / "g.png")]) == 0
    out = capsys.readouterr().out
    assert f"pack: {dest}" in out and "images: 5000" in out
    meta = json.loads((dest / packs.META).read_text())
    assert meta["count"] == 5000 and meta["source"] == "mnist5k" and meta["classes"] == [str(i) for i in range(10)]
    memory, mapped = loading.load("mnist5k"), loading.load(f"packed:{dest}")
    assert mapped.pack == dest and torch.equal(memory.images, mapped.images)
    assert torch.equal(memory.labels, mapped.labels) and mapped.classes == memory.classes
    assert np.load(dest / packs.IMAGES).shape == (5000, 1, 28, 28)  # a plain .npy: numpy reads it
    assert meta["fingerprint"] == loading.content_hash(memory)
    # never over an existing folder
    assert main(["data", "mnist5k", "--pack", str(dest), "-o", str(tmp_path / "g2.png")]) == 2
    assert "already exists" in capsys.readouterr().err


def test_training_from_a_pack_equals_training_from_its_folder(tmp_path, cache):
    root = _digits_folder(tmp_path / "imgs", n=64)
    dest = loading.pack(f"folder:{root}", tmp_path / "p", image_size=28)
    losses = {}
    for name, source in (("folder", f"folder:{root}"), ("packed", f"packed:{dest}")):
        cfg = tiny_config(preset="dcgan", data=source, subset=0, batch_size=16, eval_every=0, sample_count=4)
        train(cfg, tmp_path / name, progress=False)
        rows = MetricsFile(tmp_path / name / "metrics.jsonl").read("train")
        losses[name] = [(r["loss_D"], r["loss_G"]) for r in rows]
    assert len(losses["folder"]) >= 1 and losses["folder"] == losses["packed"]


@pytest.mark.parametrize("damage,why", [
    (lambda d: (d / packs.IMAGES).write_bytes((d / packs.IMAGES).read_bytes()[:-100]), "truncated"),
    (lambda d: np.save(d / packs.IMAGES, np.zeros((8, 1, 12, 12), np.float32)), "holds float32"),
    (lambda d: np.save(d / packs.IMAGES, np.array([{"a": 1}] * 8, dtype=object)), "holds object"),
    (lambda d: (d / packs.IMAGES).write_bytes(b"\x93NUMPY\x01\x00garbage"), "damaged or not an array"),
    (lambda d: (d / packs.IMAGES).unlink(), "images.npy is missing"),
    (lambda d: _edit_meta(d, count=9), "says uint8 (9,"),
    (lambda d: _edit_meta(d, image_size=14), "says uint8"),
    (lambda d: _edit_meta(d, format="something"), "does not describe a gankit pack"),
    (lambda d: _edit_meta(d, version=99), "version 99"),
    (lambda d: _edit_meta(d, channels=2), "bad channels"),
    (lambda d: _edit_meta(d, classes=None), "names no classes"),
    (lambda d: (d / packs.META).write_text("{not json"), "unreadable"),
    (lambda d: ((d / packs.IMAGES).unlink(), os.mkfifo(d / packs.IMAGES)), "not a regular file"),
    (lambda d: ((d / packs.META).unlink(), (d / packs.META).mkdir()), "not a regular file"),
    (lambda d: np.save(d / packs.LABELS, np.full(8, 5, np.int64)), "outside the 2 classes"),
    (lambda d: np.save(d / packs.LABELS, np.zeros(7, np.int64)), "says int64 (8,)"),
    (lambda d: (d / packs.META).write_text("[" * 100_000), "unreadable"),
    (lambda d: (d / packs.META).write_text('{"count": ' + "9" * 5000 + "}"), "unreadable"),
    (lambda d: (_edit_meta(d, count=2**40, image_size=4096), _rewrite_header(d / packs.IMAGES,
     "(1099511627776, 1, 4096, 4096)")), "not the 18446744073709551744 its header says"),
    (lambda d: _rewrite_header(d / packs.IMAGES, "(8, 1, 12, 12}"), "damaged or not an array"),
    (lambda d: _rewrite_header(d / packs.LABELS, "(1099511627776,)"), "says int64 (8,)"),
    (lambda d: np.save(d / packs.IMAGES, np.asfortranarray(np.zeros((8, 1, 12, 12), np.uint8))), "Fortran"),
])
def test_damaged_or_foreign_packs_are_refused_with_one_line(tmp_path, capsys, damage, why):
    dest = _small_pack(tmp_path / "p")
    damage(dest)
    with pytest.raises(GankitError, match="is not a usable gankit pack") as err:
        packs.open_pack(dest)
    assert why in str(err.value)
    assert main(["data", f"packed:{dest}", "--image-size", "12", "-o", str(tmp_path / "g.png")]) == 2
    err_text = capsys.readouterr().err
    assert err_text.count("\n") == 1 and "not a usable gankit pack" in err_text


def test_a_pack_of_another_size_or_channel_count_is_refused(tmp_path):
    dest = _small_pack(tmp_path / "p")
    with pytest.raises(GankitError, match=r"holds 12x12 images, not 28x28: pass --image-size 12"):
        loading.load(f"packed:{dest}", image_size=28)
    with pytest.raises(GankitError, match="holds 1-channel images, not 3"):
        loading.load(f"packed:{dest}", image_size=12, channels=3)
    with pytest.raises(GankitError, match="pack not found"):
        loading.load(f"packed:{tmp_path / 'nope'}")


def test_a_damaged_cache_entry_is_packed_again_never_trusted(tmp_path, cache, capsys):
    root = _digits_folder(tmp_path / "imgs", n=10)
    loading.load(f"folder:{root}", image_size=28)
    (entry,) = _cache_packs()
    images = entry / packs.IMAGES
    images.write_bytes(images.read_bytes()[:1000])
    notes = []
    ds = loading.load(f"folder:{root}", image_size=28, say=notes.append)
    assert "packed into" in ds.cache and any("is damaged" in n for n in notes)
    assert ds.images.shape == (10, 1, 28, 28) and os.path.getsize(images) > 1000
    (entry / packs.META).write_text("[" * 100_000)  # a crafted description: rebuilt too, never a traceback
    assert "packed into" in loading.load(f"folder:{root}", image_size=28).cache


def test_the_grid_of_gankit_data_never_lands_on_a_run_a_pack_or_its_source(tmp_path, mlp_run, capsys):
    pack = _small_pack(tmp_path / "p")
    before = (pack / packs.IMAGES).read_bytes()
    root = _digits_folder(tmp_path / "imgs", n=4)
    cases = [(["mnist5k", "-o", str(mlp_run / "generator.safetensors")], "ending in .png"),
             (["mnist5k", "-o", str(mlp_run / "samples" / "x.png")], "inside the run directory"),
             ([f"packed:{pack}", "--image-size", "12", "-o", str(pack / "images.npy")], "ending in .png"),
             (["mnist5k", "-o", str(pack / "grid.png")], "inside the pack"),
             ([f"folder:{root}", "-o", str(root / "class0" / "0000.png")], "which this command reads"),
             (["mnist5k", "-o", str(tmp_path)], "ending in .png")]
    for argv, why in cases:
        assert main(["data", *argv]) == 2, argv
        err = capsys.readouterr().err
        assert why in err and err.count("\n") == 1, err
    assert (pack / packs.IMAGES).read_bytes() == before and not (mlp_run / "samples" / "x.png").exists()


def test_a_folder_that_changes_while_packed_is_refused_and_nothing_is_cached(tmp_path, cache, monkeypatch):
    root = _digits_folder(tmp_path / "imgs", n=10)
    real = folders._decode

    def decode_and_add_a_file(task):
        _digits_folder(root / "class0" / "late", n=1)  # a file appears during packing
        return real(task)

    monkeypatch.setattr(folders, "_decode", decode_and_add_a_file)
    with pytest.raises(GankitError, match="changed while it was being packed"):
        loading.load(f"folder:{root}", image_size=28)
    home = cache / "packs"
    assert not home.exists() or list(home.iterdir()) == []  # no pack, no temporary folder


def test_two_processes_packing_one_folder_at_once_both_succeed(tmp_path, cache):
    root = _digits_folder(tmp_path / "imgs", n=40)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "gankit", "data", f"folder:{root}", "-o"]
    procs = [subprocess.Popen([*cmd, str(tmp_path / f"{i}.png")], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        assert "images: 40" in out
    (entry,) = _cache_packs()  # one pack, no leftovers
    assert packs.open_pack(entry).images.shape == (40, 1, 28, 28)


def test_the_evaluator_hash_of_a_folder_is_its_pack_fingerprint_not_its_pixels(tmp_path, cache, monkeypatch):
    root = _digits_folder(tmp_path / "imgs", n=10)
    ds = loading.load(f"folder:{root}", image_size=28)
    monkeypatch.setattr(data, "content_hash", lambda _d: pytest.fail("the pixels were read to hash them"))
    digest = classifier.data_hash(ds)
    assert digest == classifier.data_hash(loading.load(f"folder:{root}", image_size=28))
    os.utime(sorted(root.rglob("*.png"))[0], ns=(10**18, 10**18))
    assert classifier.data_hash(loading.load(f"folder:{root}", image_size=28)) != digest


RSS_SCRIPT = """
import sys, torch
from gankit.data import batches, loading, packs
packs.IN_MEMORY_BYTES = 0  # a pack larger than memory allows: mapped
def anon():
    return int(next(l for l in open('/proc/self/status') if l.startswith('RssAnon')).split()[1]) * 1024
ds = loading.load('packed:' + sys.argv[1], image_size=64)
kw = dict(batch_size=128, seed=0, generator=torch.Generator())
for x, _ in batches.Batches(ds.images[:1024].clone(), **kw).epoch(0):  # the batch pipeline's own buffers, warmed
    pass
before, peak = anon(), 0
mapped = batches.Batches(ds.images, **kw)
for epoch in range(2):
    for x, _ in mapped.epoch(epoch):
        peak = max(peak, anon())
print(before, peak, ds.images.numel())
"""


def test_iterating_a_mapped_pack_keeps_anonymous_memory_far_below_its_size(tmp_path):
    n = 12_000  # 12,000 x 3 x 64 x 64 = 147 MB
    writer = packs.PackWriter(tmp_path / "big", 64, 3)
    rng = np.random.default_rng(0)
    block = rng.integers(0, 256, (100, 3, 64, 64), dtype=np.uint8)
    for i in range(n):
        writer.add(block[i % 100])
    writer.finish("synthetic", "f" * 64)
    # large blocks straight from and back to the system, so that RssAnon is what is alive, not malloc's cache
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": "131072"}
    done = subprocess.run([sys.executable, "-c", RSS_SCRIPT, str(tmp_path / "big")], capture_output=True,
                          text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    before, peak, size = map(int, done.stdout.split())
    assert size == n * 3 * 64 * 64
    assert peak - before < size / 8, f"anonymous memory grew by {(peak - before) / 2**20:.0f} MiB"


def _small_pack(dest: Path) -> Path:
    writer = packs.PackWriter(dest, 12, 1)
    for i in range(8):
        writer.add(np.full((1, 12, 12), i * 30, np.uint8))
    return writer.finish("synthetic", "0" * 64, np.array([0, 1] * 4), ["a", "b"])


def _edit_meta(dest: Path, **changes) -> None:
    meta = json.loads((dest / packs.META).read_text())
    meta.update(changes)
    (dest / packs.META).write_text(json.dumps(meta))


def test_batches_from_host_memory_are_gathered_there_and_moved_to_the_training_device(tmp_path):
    dest = _small_pack(tmp_path / "p")
    ds = loading.load(f"packed:{dest}", image_size=12)
    labels = ds.labels.to("meta")
    on_meta = batches.Batches(ds.images, 4, seed=0, labels=labels, device=torch.device("meta"))
    assert on_meta.pin is False  # pinned staging only for a GPU
    (x, y), *_ = list(on_meta.epoch(0))
    assert x.device.type == "meta" and x.shape == (4, 1, 12, 12) and y.device.type == "meta"
    on_host = batches.Batches(ds.images, 4, seed=0, labels=ds.labels)
    (x, y), *_ = list(on_host.epoch(0))
    order = torch.randperm(8, generator=torch.Generator().manual_seed(0))[:4]
    assert torch.equal(y, ds.labels[order]) and torch.allclose(x, batches.to_float(ds.images[order]))


def test_a_killed_packers_temporary_folder_is_removed_by_the_next_pack(tmp_path):
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".p.{int(gone.stdout)}-0123abcd.tmp"  # what a SIGKILLed writer leaves
    alive = tmp_path / f".q.{os.getpid()}-0123abcd.tmp"  # a writer still at work
    for folder in (dead, alive):
        (folder / packs.IMAGES).parent.mkdir()
        (folder / packs.IMAGES).write_bytes(b"\0" * 1000)
    _small_pack(tmp_path / "p")
    assert not dead.exists() and alive.exists() and (tmp_path / "p" / packs.META).is_file()


def _rewrite_header(file: Path, shape: str) -> None:
    """Put another shape text into an .npy header, keeping its length (crafted, possibly unparsable)."""
    data = file.read_bytes()
    header_len = int.from_bytes(data[8:10], "little")
    text = data[10:10 + header_len].decode("latin1")
    start = text.index("'shape': ") + len("'shape': ")
    text = text[:start] + shape + text[text.index(")", start) + 1:]
    body = text.rstrip().ljust(header_len - 1)[:header_len - 1] + "\n"
    file.write_bytes(data[:10] + body.encode("latin1") + data[10 + header_len:])


SLOW_PACKER = """
import sys, time
from pathlib import Path
from gankit.data import folders
folders.decode_or_why = lambda path, size, background: time.sleep(120)  # workers that would outlive a killed parent
print("start", flush=True)
list(folders.decode_all([Path(sys.argv[1])] * (4 * folders.CHUNK), 8, 0))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux's")
def test_decoding_workers_die_with_a_killed_packer(tmp_path):
    import signal
    import time

    image = _digits_folder(tmp_path / "imgs", n=1) / "class0" / "0000.png"
    packer = subprocess.Popen([sys.executable, "-c", SLOW_PACKER, str(image)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert packer.stdout.readline().strip() == "start"
        deadline = time.monotonic() + 60
        while len(workers := children(packer.pid)) < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(workers) >= 2, workers
        os.kill(packer.pid, signal.SIGKILL)
        packer.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not any(Path(f"/proc/{w}").exists() for w in workers)
    finally:
        packer.kill()
