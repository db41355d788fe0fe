"""Hostile data (issue 25): caches checked against what they claim (class 3), a pack's labels mapped (class 7),
and the data path's faults (class 11): Ctrl-C while packing, a full disk, unreadable class folders, absurd
image shapes, files where folders belong, concurrent packers, folders edited while packed, a changed source on
resume, packs cut or appended to."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.data import folders, loading, packs
from gankit.errors import GankitError
from gankit.quality import classifier as clf
from gankit.quality import evaluator as ev


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _folder(root: Path, n: int = 6, size: int = 16, classes: int = 2, shade: int = 0) -> Path:
    """n PNGs in one subfolder per class; image i is filled with the gray level 10 * i + shade."""
    for i in range(n):
        path = root / f"c{i % classes}" / f"{i:03d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((size, size), 10 * i + shade, np.uint8), "L").save(path)
    return root


def _entries(cache: Path) -> list[Path]:
    home = cache / "packs"
    return sorted(home.iterdir()) if home.is_dir() else []


def _one_line_error(capsys) -> str:
    """The error's one line (after any progress lines such as "packing ... into ..."), no traceback."""
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("gankit: error:")]
    assert len(errors) == 1 and err.endswith(errors[0] + "\n") and "Traceback" not in err, err
    return errors[0]


# ---------------------------------------------------------------- class 3: caches checked, else made again
def test_the_shared_check_names_the_first_misfit_and_reuse_removes_what_does_not_fit(tmp_path):
    from gankit.data import caches

    assert caches.mismatch({"a": 1, "b": "x"}, {"a": 1, "b": "x"}) is None
    assert caches.mismatch({"a": True}, {"a": 1}) == "its a is True, not 1"  # a bool is no count
    assert caches.mismatch({}, {"a": 1}) == "it records no a"
    said = []
    entry = tmp_path / "entry"
    entry.write_text("x")
    assert caches.reuse(entry, "thing", lambda p: p.read_text(), lambda e: "its size is 2, not 1", said.append) is None
    assert not entry.exists()
    assert said == [f"the cached thing {entry} does not fit (its size is 2, not 1): making it again"]
    entry.write_text("x")
    assert caches.reuse(entry, "thing", lambda p: 1 / 0, lambda e: None, said.append) is None
    assert not entry.exists() and "is damaged (ZeroDivisionError)" in said[-1]


def test_a_fifo_where_a_cached_file_belongs_is_made_again_never_opened(tmp_path):
    """Second pass: a FIFO at a cached real-feature reference's path hung `gankit evaluate` (safetensors opened
    it and waited). reuse checks a file entry with files.regular before its loader sees the path."""
    from gankit.data import caches

    entry = tmp_path / "reference.safetensors"
    os.mkfifo(entry)
    opened, said = [], []
    assert caches.reuse(entry, "real-feature reference", opened.append, lambda e: None, said.append) is None
    assert opened == [] and not (entry.exists() or entry.is_symlink())
    assert len(said) == 1 and "is damaged" in said[0] and "FIFO" in said[0] and "making it again" in said[0]


def test_a_cache_entry_holding_another_folders_pack_is_packed_again(tmp_path, cache):
    mine = _folder(tmp_path / "mine", shade=0)
    other = _folder(tmp_path / "other", shade=5)
    first = loading.load(f"folder:{mine}", image_size=16)
    loading.load(f"folder:{other}", image_size=16)
    entry = first.pack
    theirs = next(p for p in _entries(cache) if p != entry)
    shutil.rmtree(entry)
    shutil.copytree(theirs, entry)  # the other folder's whole, valid pack under this folder's key
    said = []
    again = loading.load(f"folder:{mine}", image_size=16, say=said.append)
    assert "packed into" in again.cache
    assert any("does not fit (its source is 'folder:" in s and str(other) in s for s in said), said
    assert torch.equal(again.images, first.images)


@pytest.mark.parametrize("lie", [{"fingerprint": "0" * 64}, {"decoder": 1}, {"background": "black"},
                                 {"skipped": 3}, {"source": 5}])
def test_a_cached_pack_whose_description_does_not_fit_the_request_is_packed_again(tmp_path, cache, lie):
    root = _folder(tmp_path / "imgs")
    first = loading.load(f"folder:{root}", image_size=16)
    meta = json.loads((first.pack / packs.META).read_text())
    (first.pack / packs.META).write_text(json.dumps({**meta, **lie}))
    said = []
    again = loading.load(f"folder:{root}", image_size=16, say=said.append)
    assert "packed into" in again.cache and any("does not fit" in s or "is damaged" in s for s in said), said
    assert json.loads((first.pack / packs.META).read_text()) == meta  # made again as it was first made


def test_bytes_appended_to_a_packs_images_are_refused_and_a_cached_one_is_packed_again(tmp_path, cache, capsys):
    root = _folder(tmp_path / "imgs")
    first = loading.load(f"folder:{root}", image_size=16)
    with open(first.pack / packs.IMAGES, "ab") as fh:
        fh.write(b"\0" * 16 * 16)  # one more image's worth: the header and pack.json still say 6
    with pytest.raises(GankitError, match="appended to"):
        packs.open_pack(first.pack)
    assert main(["data", f"packed:{first.pack}", "--image-size", "16", "-o", str(tmp_path / "g.png")]) == 2
    assert "appended to" in _one_line_error(capsys)
    said = []
    assert "packed into" in loading.load(f"folder:{root}", image_size=16, say=said.append).cache
    assert any("appended to" in s for s in said)


def _tiny_data(n: int = 40, channels: int = 1, size: int = 12, labeled: bool = True) -> loading.ImageData:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, channels, size, size), dtype=torch.uint8, generator=g)
    labels = torch.arange(n) % 2 if labeled else None
    return loading.ImageData(images, labels, ["a", "b"] if labeled else None, "tiny")


def _untrained(spec: clf.ClassifierSpec) -> clf.Classifier:
    torch.manual_seed(0)
    return clf.Classifier(spec).eval()


@pytest.mark.parametrize("change", [{"channels": 3}, {"image_size": 16}, {"classes": ["a", "b", "c"]},
                                    {"objective": "contrastive", "classes": []}, {"data_hash": "f" * 64},
                                    {"source": "other"}])
def test_a_cached_evaluator_that_does_not_fit_the_data_is_trained_again_with_one_line(cache, monkeypatch, capsys,
                                                                                         change):
    data = _tiny_data()
    trained = []

    def train(data, epochs=8, progress=True, log=None):
        trained.append(1)
        return _untrained(clf.ClassifierSpec(1, 12, ["a", "b"], "tiny", clf.data_hash(data)))

    monkeypatch.setattr(ev, "train_evaluator", train)
    ev.evaluator_for(data, progress=False)
    (cached,) = (cache / "evaluators").iterdir()
    good = clf.ClassifierSpec(1, 12, ["a", "b"], "tiny", clf.data_hash(data))
    clf.save_classifier(_untrained(clf.ClassifierSpec(**{**vars(good), **change})), cached)  # a valid file that lies
    capsys.readouterr()
    model = ev.evaluator_for(data, progress=False)
    assert (model.spec.channels, model.spec.image_size, model.spec.classes) == (1, 12, ["a", "b"])
    assert len(trained) == 2
    err = capsys.readouterr().err
    assert f"the cached evaluator {cached} does not fit (its {next(iter(change))} is" in err and err.count("\n") == 1


@pytest.mark.parametrize("crafted", [
    {"preds_b": lambda t: torch.full_like(t, 7)},  # classes the evaluator does not have
    {"class_prior": lambda t: torch.ones(5)},  # another number of classes
    {"features_a": lambda t: t.to(torch.int64)},  # no features
    {"preds_b": lambda t: t.float()},
])
def test_a_cached_reference_that_does_not_fit_its_evaluator_is_computed_again_with_one_line(cache, capsys, crafted):
    from safetensors.torch import load_file, save_file

    data = _tiny_data()
    model = _untrained(clf.ClassifierSpec(1, 12, ["a", "b"], "tiny", clf.data_hash(data)))
    ref = ev.reference_for(data, model)
    (path,) = (cache / "reference").iterdir()
    tensors = load_file(str(path))
    tensors.update({k: f(tensors[k]) for k, f in crafted.items()})
    save_file(tensors, str(path))
    capsys.readouterr()
    again = ev.reference_for(data, model)
    assert torch.equal(again.preds_b, ref.preds_b) and torch.equal(again.class_prior, ref.class_prior)
    assert torch.equal(again.features_a, ref.features_a)
    err = capsys.readouterr().err
    assert f"the cached real-feature reference {path} does not fit" in err and err.count("\n") == 1


# ---------------------------------------------------------------- class 7: labels mapped, not copied
def test_a_large_packs_labels_are_mapped_not_read_and_copied(tmp_path, monkeypatch):
    writer = packs.PackWriter(tmp_path / "p", 8, 1)
    for i in range(10):
        writer.add(np.full((1, 8, 8), i, np.uint8))
    writer.finish("synthetic", "0" * 64, np.arange(10) % 3, ["a", "b", "c"])
    monkeypatch.setattr(packs, "IN_MEMORY_BYTES", 0)  # as for a pack larger than memory allows
    pack = packs.open_pack(tmp_path / "p")
    assert isinstance(pack.images, np.memmap) and isinstance(pack.labels, np.memmap)
    data = loading.load(f"packed:{tmp_path / 'p'}", image_size=8)
    assert data.labels.dtype == torch.int64 and data.labels[[1, 5]].tolist() == [1, 2]


# ---------------------------------------------------------------- class 11: the data path
CUT_WHILE_USED = """
import os, sys
from gankit.data import packs
pack = packs.open_pack(sys.argv[1])
os.truncate(os.path.join(sys.argv[1], "images.npy"), 200)  # someone else cuts the file while it is in use
print(int(pack.images.sum()), isinstance(pack.images, packs.np.memmap))
"""


def test_a_small_pack_cut_by_someone_else_while_in_use_does_not_kill_the_process(tmp_path):
    writer = packs.PackWriter(tmp_path / "p", 8, 1)
    for _ in range(50):
        writer.add(np.full((1, 8, 8), 1, np.uint8))
    writer.finish("synthetic", "0" * 64)
    done = subprocess.run([sys.executable, "-c", CUT_WHILE_USED, str(tmp_path / "p")], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, (done.returncode, done.stderr)  # not -SIGBUS
    assert done.stdout.split() == [str(50 * 64), "False"]


def test_a_full_disk_while_packing_removes_the_partial_pack_and_names_it(tmp_path, capsys, monkeypatch):
    root = _folder(tmp_path / "imgs", n=8)
    real_open = open

    class FullDisk:
        """A file on a disk that fills after the header: every later write fails, and so does the close that
        flushes what the buffer still holds."""

        def __init__(self, path, mode):
            self.fh, self.written = real_open(path, mode), 0

        def write(self, data):
            if self.written + len(data) > packs.HEADER:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.written += len(data)
            return self.fh.write(data)

        def close(self):
            self.fh.close()
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(packs, "open", lambda path, mode="r", **kw: FullDisk(path, mode) if str(path).endswith(
        packs.IMAGES) and "w" in mode else real_open(path, mode, **kw), raising=False)
    dest = tmp_path / "out" / "p"
    assert main(["data", f"folder:{root}", "--pack", str(dest), "--image-size", "16", "-o",
                 str(tmp_path / "g.png")]) == 2
    err = _one_line_error(capsys)
    assert str(dest) in err and "No space left on device" in err and "partial pack was removed" in err
    assert list((tmp_path / "out").iterdir()) == []  # no hidden partial pack holding the space


def test_an_unreadable_class_folder_is_refused_not_dropped_without_a_word(tmp_path, cache, capsys, monkeypatch):
    root = _folder(tmp_path / "imgs", n=6, classes=3)
    real = folders._entries

    def listing(folder):
        if Path(folder).name == "c1":  # chmod 000 (the tests run as root, where it would not show)
            raise PermissionError(errno.EACCES, "Permission denied", str(folder))
        return real(folder)

    monkeypatch.setattr(folders, "_entries", listing)
    assert main(["data", f"folder:{root}", "--image-size", "16", "-o", str(tmp_path / "g.png")]) == 2
    err = _one_line_error(capsys)
    assert f"cannot list the folder {root / 'c1'} (Permission denied)" in err
    assert _entries(cache) == []


def test_an_absurdly_long_strip_is_a_skipped_file_with_its_shape_not_gigabytes(tmp_path, cache):
    root = _folder(tmp_path / "imgs", n=4, classes=1)
    Image.new("L", (400_000, 1), 255).save(root / "c0" / "strip.png")  # a few hundred bytes on disk
    Image.new("L", (40, 1000), 255).save(root / "c0" / "tall.png")  # 25:1 is a picture still
    data = loading.load(f"folder:{root}", image_size=16)
    assert len(data) == 5 and data.skipped == 1
    assert any("strip.png (400000 x 1 pixels, a side over 50 times the other)" in n for n in data.notes), data.notes
    assert folders.decode_file(root / "c0" / "strip.png", 16) is None


def test_labels_stay_with_their_images_after_a_skipped_file(tmp_path, cache):
    root = _folder(tmp_path / "imgs", n=9, classes=3)
    (root / "c0" / "001.png").write_bytes(b"not a png")  # sorts before the rest of class 0's files
    (root / "c1" / "000.png").write_bytes(b"nor this")
    data = loading.load(f"folder:{root}", image_size=16)
    assert data.skipped == 2 and len(data) == 9
    gray_of = {}  # the gray level each kept file was written with -> its class
    for i in range(9):
        gray_of[10 * i] = i % 3
    for image, label in zip(data.images, data.labels):
        assert gray_of[int(image[0, 0, 0])] == int(label)


@pytest.mark.parametrize("kind", ["folder", "packed"])
def test_a_file_given_as_a_folder_or_pack_is_called_a_file(tmp_path, capsys, kind):
    file = tmp_path / "notes.txt"
    file.write_text("x")
    assert main(["data", f"{kind}:{file}", "-o", str(tmp_path / "g.png")]) == 2
    err = _one_line_error(capsys)
    assert f"{file} is a file, not a folder: {kind}:PATH needs" in err and "not found" not in err


def test_a_file_rewritten_in_place_while_packed_is_refused_and_nothing_is_written(tmp_path, cache, monkeypatch):
    root = _folder(tmp_path / "imgs", n=6)
    victim = root / "c1" / "005.png"
    real = folders._decode

    def decode_then_edit(task):
        st = victim.stat()
        Image.fromarray(np.full((16, 16), 200, np.uint8), "L").save(victim)  # edited in place...
        os.utime(victim, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...with its mtime put back (size may match)
        return real(task)

    monkeypatch.setattr(folders, "_decode", decode_then_edit)
    with pytest.raises(GankitError, match="changed while it was being packed"):
        loading.load(f"folder:{root}", image_size=16)
    with pytest.raises(GankitError, match="changed while it was being packed"):
        loading.pack(f"folder:{root}", tmp_path / "p", image_size=16)
    assert _entries(cache) == [] and not (tmp_path / "p").exists()


def test_a_pack_that_appeared_meanwhile_is_not_reported_as_ours(tmp_path, cache, monkeypatch):
    mine, theirs = _folder(tmp_path / "mine"), _folder(tmp_path / "theirs", shade=5)
    dest = tmp_path / "p"
    real = folders._decode
    started = []

    def another_packer_wins(task):
        if not started:
            started.append(1)
            loading.pack(f"folder:{theirs}", dest, image_size=16)  # finishes first, into the same folder
        return real(task)

    monkeypatch.setattr(folders, "_decode", another_packer_wins)
    with pytest.raises(GankitError, match="appeared while this pack was being made"):
        loading.pack(f"folder:{mine}", dest, image_size=16)
    assert packs.open_pack(dest).meta["source"] == f"folder:{theirs.resolve()}"  # theirs, untouched
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def _big_folder(root: Path, n: int = 600) -> Path:
    rng = np.random.default_rng(0)
    for i in range(n):
        path = root / f"{i:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (96, 96), dtype=np.uint8), "L").save(path, compress_level=0)
    return root


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the workers' signal handling is Linux's")
def test_ctrl_c_while_packing_stops_at_once_and_leaves_no_partial_pack(tmp_path, cache):
    root = _big_folder(tmp_path / "imgs")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for k, delay in enumerate((0.0, 0.3, 0.8)):  # as the pool starts, and while it decodes
        dest = tmp_path / f"out{k}" / "pack"  # a folder each: a pack that finished before its Ctrl-C stays
        proc = subprocess.Popen([sys.executable, "-m", "gankit", "data", f"folder:{root}", "--pack", str(dest),
                                 "--image-size", "64", "-o", str(tmp_path / f"g{k}.png")],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        assert "packing the images of" in proc.stderr.readline()
        time.sleep(delay)
        proc.send_signal(signal.SIGINT)
        try:
            rest = proc.stderr.read()
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise AssertionError(f"still running 30 s after Ctrl-C (delay {delay})") from None
        leftovers = [p.name for p in dest.parent.iterdir()]
        if proc.returncode == 0:  # it had finished: the pack is whole
            assert leftovers == [dest.name] and packs.open_pack(dest).images.shape[0] == 600
            continue
        assert proc.returncode == 130, rest
        assert rest.count("\n") == 1 and "Traceback" not in rest, rest
        assert rest.startswith("gankit: interrupted; ") and f"nothing was written to {dest})" in rest, rest
        assert leftovers == [], leftovers


def test_resuming_on_a_source_that_changed_is_one_line_naming_both_fingerprints(tmp_path, mlp_run, capsys):
    from gankit.run import checkpoint, generator_file
    from gankit.training.launch import resume

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    state = checkpoint.load_checkpoint(run)
    recorded = state["data"]
    assert recorded == loading.identity(loading.load_for(generator_file.load_run_config(run)))
    state["data"] = "0123456789ab" + "0" * 52  # what the source held when the checkpoint was written
    checkpoint.save_checkpoint(state, run)
    before = (run / "checkpoint.pt").read_bytes()
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = _one_line_error(capsys)
    assert "0123456789ab" in err and recorded[:12] in err and "--set data_changed_ok=true" in err
    assert (run / "checkpoint.pt").read_bytes() == before  # nothing was changed
    resume(run, {"epochs": 2, "data_changed_ok": True}, progress=False)
    assert "continuing" in capsys.readouterr().err and checkpoint.load_checkpoint(run)["epoch"] == 2
    assert checkpoint.load_checkpoint(run)["data"] == recorded  # the new checkpoint records the data it trained on
