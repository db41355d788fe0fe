"""Issue 25, classes 2, 7 and 9 (part): gankit reads regular files only (a FIFO, a folder or a device where a file
belongs is one line saying what it is, never a wait), and bounds the work before a refusal (a checkpoint whose
entries inflate, a huge .npy of fakes, an over-long line in metrics.jsonl)."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

from gankit import files
from gankit.cli import main
from gankit.errors import GankitError
from gankit.run import checkpoint, metrics_log
from gankit.run.metrics_log import MetricsFile


@pytest.fixture(autouse=True)
def _no_hang():
    """A read that blocks (a FIFO opened without O_NONBLOCK) fails the test after 20 s instead of hanging it."""
    def hung(*_):
        raise AssertionError("a read blocked: gankit opened something that is not a regular file")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(20)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def _cli(capsys, *argv) -> tuple[int, str]:
    code = main([str(a) for a in argv])
    return code, capsys.readouterr().err


def _one_line(code: int, err: str, *words: str) -> None:
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, err
    assert all(w in err for w in words), err


def _fifo(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    path.unlink(missing_ok=True)
    os.mkfifo(path)


def _folder(path: Path) -> None:
    path.unlink(missing_ok=True)
    path.mkdir()


# ------------------------------------------------------------------ the rule itself


def test_the_reader_opens_regular_files_only_and_says_what_else_is_there(tmp_path):
    (tmp_path / "file").write_bytes(b"abc")
    os.mkfifo(tmp_path / "fifo")
    (tmp_path / "folder").mkdir()
    os.symlink(tmp_path / "file", tmp_path / "link")  # a link to a regular file reads as that file
    assert files.read_regular(tmp_path / "file", 10) == b"abc" == files.read_regular(tmp_path / "link", 10)
    assert files.regular(tmp_path / "file") and not files.regular(tmp_path / "missing")
    with pytest.raises(GankitError, match="missing here"):
        files.regular(tmp_path / "missing", missing="missing here")
    for name, what in (("fifo", "is a FIFO (named pipe), not a regular file"), ("folder", "is a folder, not a")):
        for check in (lambda p: files.regular(p), lambda p: files.read_regular(p, 10), files.open_regular):
            with pytest.raises(GankitError, match=what.replace("(", r"\(").replace(")", r"\)")):
                check(tmp_path / name)
    with pytest.raises(GankitError, match="is a character device"):
        files.read_regular("/dev/zero", 10)  # a device streams forever
    with pytest.raises(GankitError, match="holds 3 bytes, more than the 2"):
        files.read_regular(tmp_path / "file", 2)
    assert files.irregular(tmp_path, ("file", "missing", "fifo")) == "fifo is a FIFO (named pipe), not a regular file"


# ------------------------------------------------------------------ class 2: report never waits


@pytest.mark.parametrize("name, make, what", [
    ("metrics.jsonl", _fifo, "is a FIFO (named pipe)"),
    ("metrics.jsonl", _folder, "is a folder"),
    ("samples/epoch_001.png", _fifo, "is a FIFO (named pipe)"),
    ("reals.png", _fifo, "is a FIFO (named pipe)"),
    ("best.safetensors", _fifo, "is a FIFO (named pipe)"),
    ("config.toml", _folder, "is a folder"),
])
def test_report_says_what_stands_where_a_file_belongs(capsys, mlp_run, tmp_path, name, make, what):
    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    make(run / name)
    _one_line(*_cli(capsys, "report", run), name.split("/")[-1], what, "not a regular file")
    assert not (run / "report.html").exists()


def test_a_fifo_in_a_detector_beside_the_run_is_passed_over(capsys, mlp_run, tmp_path):
    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    detector = tmp_path / "det"
    detector.mkdir()
    (detector / "detector.toml").write_text('method = "spectrum"\n')
    os.mkfifo(detector / "metrics.jsonl")
    code, _ = _cli(capsys, "report", run)
    assert code == 0 and (run / "report.html").is_file()
    _one_line(*_cli(capsys, "report", detector), "is a FIFO (named pipe)")


# ------------------------------------------------------------------ class 9: what it is, not "not found"


def test_a_fifo_generator_is_named_not_blamed_on_training(capsys, mlp_run, tmp_path):
    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    _fifo(run / "generator.safetensors")
    _one_line(*_cli(capsys, "generate", run, "-o", tmp_path / "x.png"), "generator.safetensors is a FIFO")
    _folder(run / "generator.safetensors")
    _one_line(*_cli(capsys, "generate", run, "-o", tmp_path / "x.png"), "generator.safetensors is a folder")


def test_a_folder_checkpoint_is_named_not_reported_missing(capsys, mlp_run, tmp_path):
    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    _folder(run / "checkpoint.pt")
    with pytest.raises(GankitError, match="checkpoint.pt is a folder, not a regular file"):
        checkpoint.load_checkpoint(run)


def test_config_fakes_and_evaluator_inputs_say_what_they_are(capsys, tmp_path):
    from gankit import config
    from gankit.inference import fake_sources
    from gankit.quality.classifier import load_classifier

    os.mkfifo(tmp_path / "fakes.npy")
    os.mkfifo(tmp_path / "config.toml")
    os.mkfifo(tmp_path / "evaluator.safetensors")
    with pytest.raises(GankitError, match="fakes.npy is a FIFO"):
        fake_sources.kind_of(tmp_path / "fakes.npy")
    with pytest.raises(GankitError, match="config.toml is a FIFO"):
        config.read_toml(tmp_path / "config.toml")
    with pytest.raises(GankitError, match="evaluator.safetensors is a FIFO"):
        load_classifier(tmp_path / "evaluator.safetensors")
    _one_line(*_cli(capsys, "train", "--config", tmp_path / "config.toml"), "config.toml is a FIFO")


def test_a_detector_whose_config_is_a_folder_is_said_so(tmp_path):
    from gankit.detect import store

    (tmp_path / "det" / "detector.toml").mkdir(parents=True)
    with pytest.raises(GankitError, match="detector.toml is a folder, not a regular file"):
        store.read(tmp_path / "det")


# ------------------------------------------------------------------ class 7: a checkpoint that inflates


def _zip_of(state: dict, compression: int) -> bytes:
    """A torch.save archive rewritten with every entry compressed as asked."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(out, "w", compression) as dst:
        for entry in src.infolist():
            dst.writestr(entry.filename, src.read(entry.filename))
    return out.getvalue()


def _never_loaded(monkeypatch):
    def load(*_, **__):
        raise AssertionError("torch.load ran on a checkpoint that should have been refused from its directory")

    monkeypatch.setattr(checkpoint.torch, "load", load)


def test_a_checkpoint_whose_entries_inflate_is_refused_before_loading(tmp_path, monkeypatch):
    state = {"generator": {"w": torch.zeros(4 << 20)}, "discriminator": {}, "opt_g": {}, "opt_d": {},
             "epoch": 1, "step": 1}  # 16 MB of zeros: a few KB DEFLATE'd
    (tmp_path / "checkpoint.pt").write_bytes(_zip_of(state, zipfile.ZIP_DEFLATED))
    assert (tmp_path / "checkpoint.pt").stat().st_size < 200_000
    _never_loaded(monkeypatch)
    with pytest.raises(GankitError, match="holds a compressed entry .* refused before anything is inflated"):
        checkpoint.load_checkpoint(tmp_path)


def test_a_checkpoint_whose_directory_declares_more_than_the_file_holds_is_refused(tmp_path, monkeypatch):
    state = {"generator": {"w": torch.zeros(1000)}, "discriminator": {}, "opt_g": {}, "opt_d": {}, "epoch": 1,
             "step": 1}
    data = bytearray(_zip_of(state, zipfile.ZIP_STORED))
    with zipfile.ZipFile(io.BytesIO(bytes(data))) as archive:
        entry = next(e for e in archive.infolist() if e.filename.endswith("data/0"))
    # the central directory record of data/0: sizes at +20 (compressed) and +24 (uncompressed)
    name = entry.filename.encode()
    at = data.rfind(b"PK\x01\x02", 0, data.rfind(name))
    data[at + 20:at + 28] = (10**9).to_bytes(4, "little") * 2
    (tmp_path / "checkpoint.pt").write_bytes(bytes(data))
    _never_loaded(monkeypatch)
    with pytest.raises(GankitError, match="declares 1,000,000,.* bytes of entries in a file of"):
        checkpoint.load_checkpoint(tmp_path)


def test_a_real_checkpoint_still_loads(mlp_run):
    assert checkpoint.load_checkpoint(mlp_run)["epoch"] == 1


# ------------------------------------------------------------------ class 7: fakes from a huge .npy


def test_fifty_fakes_from_a_huge_npy_are_drawn_without_permuting_every_row(tmp_path, monkeypatch):
    from gankit.inference import fake_sources

    rows = 2 * 10**8
    array = np.lib.format.open_memmap(tmp_path / "huge.npy", mode="w+", dtype=np.uint8, shape=(rows, 1, 1, 1))
    array[-1] = 7  # a sparse file: 200 MB declared, a few pages written
    del array
    permute = torch.randperm

    def bounded(n, *args, **kwargs):
        assert n <= 10**6, f"a permutation of {n} rows (8 bytes each) to draw 50 of them"
        return permute(n, *args, **kwargs)

    monkeypatch.setattr(torch, "randperm", bounded)
    fakes = fake_sources.load_fakes(tmp_path / "huge.npy", 50, (1, 1), seed=3)
    assert fakes.images.shape == (50, 1, 1, 1)
    picked = fake_sources.pick(rows, 50, 3)
    assert len(set(picked.tolist())) == 50 and picked.tolist() == sorted(picked.tolist())
    assert torch.equal(picked, fake_sources.pick(rows, 50, 3))
    assert not torch.equal(picked, fake_sources.pick(rows, 50, 4))
    assert int(picked.max()) >= rows // 2  # spread over the whole array, not its start


# ------------------------------------------------------------------ class 7: an over-long metrics.jsonl line


def _long_log(path: Path, ending: bytes = b"\n") -> None:
    good = json.dumps({"kind": "train", "epoch": 1, "step": 1, "loss_D": 1.0}).encode() + b"\n"
    with open(path, "wb") as fh:
        fh.write(good)
        fh.write(b'{"kind": "train", "pad": "' + b"x" * (20 << 20) + b'"}' + ending)
        if ending:
            fh.write(good)


def _bounded(act) -> int:
    """The peak of Python memory while act() runs."""
    tracemalloc.start()
    try:
        act()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _refused(act) -> None:
    with pytest.raises(GankitError, match="line.* is longer than 1,048,576 bytes"):
        act()


@pytest.mark.parametrize("ending", [b"\n", b""])
def test_an_over_long_metrics_line_is_refused_in_one_bounded_pass(tmp_path, monkeypatch, ending):
    monkeypatch.setattr(metrics_log, "MAX_LINE_BYTES", 1 << 20, raising=False)
    log = tmp_path / "metrics.jsonl"
    _long_log(log, ending)
    before = log.read_bytes()
    assert _bounded(lambda: _refused(MetricsFile(log).read)) < 4 << 20  # not the 20 MB line, nor the file
    append = lambda: MetricsFile(log).append({"kind": "eval"})  # noqa: E731
    if ending:  # an append reads only the file's end: the damage before it is the readers' to report
        assert _bounded(append) < 4 << 20 and log.read_bytes() == before + b'{"kind": "eval"}\n'
    else:  # the last line itself is over-long: neither cut (it is not a torn record of gankit's) nor appended to
        assert _bounded(lambda: _refused(append)) < 4 << 20 and log.read_bytes() == before


def test_report_reads_metrics_once_and_refuses_an_over_long_line(capsys, mlp_run, tmp_path, monkeypatch):
    run = Path(shutil.copytree(mlp_run, tmp_path / "run"))
    reads = []
    read = MetricsFile.read
    monkeypatch.setattr(MetricsFile, "read", lambda self, kind=None: (reads.append(self.path), read(self, kind))[1])
    assert _cli(capsys, "report", run)[0] == 0
    assert reads.count(run / "metrics.jsonl") == 1  # one pass for every figure and table
    monkeypatch.setattr(metrics_log, "MAX_LINE_BYTES", 1 << 20, raising=False)
    _long_log(run / "metrics.jsonl")
    _one_line(*_cli(capsys, "report", run), "line 2 is longer than")


def test_a_torn_last_line_is_still_cut_and_short_files_still_read(tmp_path):
    log = tmp_path / "metrics.jsonl"
    log.write_bytes(b'{"kind": "train", "step": 1}\n{"kind": "tra')
    assert MetricsFile(log).read() == [{"kind": "train", "step": 1}]
    MetricsFile(log).append({"kind": "eval", "step": 2})
    assert log.read_bytes() == b'{"kind": "train", "step": 1}\n{"kind": "eval", "step": 2}\n'
    log.write_bytes(b'{"kind": "train", "step": 1}')  # whole, lacking only its newline
    MetricsFile(log).append({"kind": "eval"})
    assert [r["kind"] for r in MetricsFile(log).read()] == ["train", "eval"]


def test_an_image_given_by_path_that_is_a_fifo_is_said_so(tmp_path):
    from gankit.data import folders

    os.mkfifo(tmp_path / "x.png")
    with pytest.raises(GankitError, match="x.png is a FIFO"):  # classifier predict, detect score: one line
        folders.read_image(tmp_path / "x.png", 28)
    assert folders.read_image(tmp_path / "missing.png", 28) is None  # unreadable, as before


def test_a_fifo_named_like_an_image_in_a_folder_source_is_said_not_left_out(capsys, tmp_path, monkeypatch):
    """Second pass: a FIFO named zz.png in a class folder was left out of the listing without a word (the pack
    said 'skipped 0'), while a damaged file there is counted. It is listed, and reading it is one line saying
    what stands there (nothing is packed); a dangling link is still passed over."""
    from PIL import Image

    from gankit.data import folders

    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))
    source = tmp_path / "digits"
    for cls in ("a", "b"):
        (source / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("L", (28, 28), 40 * i).save(source / cls / f"{i}.png")
    os.mkfifo(source / "a" / "zz.png")
    os.symlink(tmp_path / "gone.png", source / "b" / "dangling.png")
    listed = [p.relative_to(source).as_posix() for p in folders.list_images(source)]
    assert "a/zz.png" in listed and "b/dangling.png" not in listed
    code, err = _cli(capsys, "data", f"folder:{source}", "-n", "4", "-o", tmp_path / "grid.png")
    assert code == 2 and "zz.png is a FIFO (named pipe)" in err and "Traceback" not in err, err
    assert not (tmp_path / "grid.png").exists()
    assert not any(p.name != "packs" for p in (tmp_path / "cache").glob("*/*")), "a pack was left in the cache"
