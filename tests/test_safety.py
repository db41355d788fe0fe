"""Run-directory safety against a hostile user: one writer, stops at any moment, crafted files, huge sizes."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.cli import main
from gankit.images import read_png
from gankit.run import checkpoint, generator_file
from gankit.run import lock as rundir
from gankit.run.metrics_log import MetricsFile
from gankit.training.launch import Trainer, resume, train

from .conftest import grid_scale, snapshot, tiny_config

GANKIT = [sys.executable, "-m", "gankit"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _copy(run: Path, tmp_path: Path) -> Path:
    shutil.copytree(run, tmp_path / "run")
    return tmp_path / "run"


# ------------------------------------------------------------------ 1. one writer


def test_a_second_writer_is_refused_with_the_holders_pid(capsys, mlp_run, tmp_path):
    run = _copy(mlp_run, tmp_path)
    with rundir.claim(run, resume=True):
        before = snapshot(run)
        code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
        assert code == 2 and err.count("\n") == 1
        assert f"is being written by another gankit process (PID {os.getpid()})" in err
        code, _, err = _cli(capsys, "train", "--preset", "simple-gan", "--out", tmp_path / "new", "--set",
                            "subset=64", "--set", "eval_every=0", "--no-progress")
        assert code == 0, err  # another folder is another run
        with rundir.claim(tmp_path / "fresh"):
            code, _, err = _cli(capsys, "train", "--out", tmp_path / "fresh", "--no-progress")
            assert code == 2 and "being written by another gankit process" in err
        assert snapshot(run) == before
        # readers work while a writer holds the run
        assert _cli(capsys, "generate", run, "-n", "4", "-o", tmp_path / "s.png")[0] == 0
        assert _cli(capsys, "report", run)[0] == 0
    assert resume(run, {"epochs": 2}, progress=False).epochs == 2  # released: the run is writable again


def test_two_trains_started_together_leave_one_consistent_run(tmp_path):
    run = tmp_path / "run"
    argv = GANKIT + ["train", "--preset", "simple-gan", "--set", "subset=128", "--set", "eval_every=0",
                     "--epochs", "1", "--out", str(run), "--no-progress"]
    procs = [subprocess.Popen(argv + ["--seed", str(seed)], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for seed in (1, 2)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    codes = sorted(code for code, _ in results)
    assert codes == [0, 2], results
    loser = next(err for code, err in results if code == 2)
    assert ("being written by another gankit process" in loser or "already exists" in loser)
    seed = generator_file.load_run_config(run).seed
    assert checkpoint.load_checkpoint(run)["config"]["seed"] == seed  # checkpoint and config.toml of one run
    steps = [r["step"] for r in MetricsFile(run / "metrics.jsonl").read("train")]
    assert steps == [1, 2, 3, 4]  # 128 images / batch 32, each step once


def test_a_killed_writers_lock_never_blocks(tmp_path):
    run = tmp_path / "run"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time; from gankit.run import lock; "
                               f"lock.claim({str(run)!r}); print('held', flush=True); time.sleep(120)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(Exception, match=f"PID {holder.pid}"):
            rundir.claim(run, resume=True)
    finally:
        holder.kill()
        holder.wait()
    with rundir.claim(run, resume=True):  # the OS dropped the lock with the process
        pass


def test_out_naming_a_file_is_one_line(capsys, tmp_path):
    (tmp_path / "file").write_text("x")
    code, _, err = _cli(capsys, "train", "--out", tmp_path / "file", "--no-progress")
    assert code == 2 and "is a file, not a run directory" in err and err.count("\n") == 1


def _dead_pid() -> int:
    done = subprocess.Popen(["true"])
    done.wait()
    return done.pid


def test_orphaned_temporary_files_are_removed_on_the_next_start(mlp_run, tmp_path):
    run = _copy(mlp_run, tmp_path)
    (run / f".checkpoint.pt.gankit-{_dead_pid()}-abc12345.tmp").write_bytes(b"half a checkpoint")
    (run / ".notes.tmp").write_text("a user's file: gankit cannot prove it made it")
    resume(run, {"epochs": 2}, progress=False)
    assert [p.name for p in run.glob(".*.tmp")] == [".notes.tmp"]


# ------------------------------------------------------------------ 2. stopped before the first checkpoint


def _interrupt_at(monkeypatch, at_step: int):
    real = Trainer.train_step

    def step(self, real_batch, y):
        if self.step == at_step:
            raise KeyboardInterrupt
        return real(self, real_batch, y)

    monkeypatch.setattr(Trainer, "train_step", step)


def test_ctrl_c_in_the_first_epoch_says_there_is_no_checkpoint_and_resume_starts_over(capsys, tmp_path,
                                                                                        monkeypatch):
    run = tmp_path / "run"
    _interrupt_at(monkeypatch, 3)
    code, _, err = _cli(capsys, "train", "--preset", "simple-gan", "--set", "subset=128", "--set", "eval_every=0",
                        "--out", run, "--no-progress", "--epochs", "2")
    assert code == 130 and "no checkpoint was written yet" in err and "intact" not in err
    assert (run / "config.toml").is_file() and not (run / "checkpoint.pt").exists()
    monkeypatch.undo()
    code, _, err = _cli(capsys, "train", "--resume", run)
    assert code == 0 and "has no checkpoint yet" in err
    steps = [r["step"] for r in MetricsFile(run / "metrics.jsonl").read("train")]
    assert steps == list(range(1, 9)) and checkpoint.load_checkpoint(run)["epoch"] == 2
    code, _, err = _cli(capsys, "train", "--out", run, "--no-progress")
    assert code == 2 and "already exists: continue it with --resume" in err


def test_ctrl_c_later_names_the_intact_checkpoint(capsys, tmp_path, monkeypatch):
    _interrupt_at(monkeypatch, 6)  # in epoch 2 (4 steps an epoch)
    code, _, err = _cli(capsys, "train", "--preset", "simple-gan", "--set", "subset=128", "--set", "eval_every=0",
                        "--out", tmp_path / "run", "--no-progress", "--epochs", "3")
    assert code == 130 and "the checkpoint of epoch 1 is intact" in err


def test_a_run_killed_while_starting_resumes_from_its_config(capsys, tmp_path):
    run = tmp_path / "run"
    config = tiny_config(subset=64, eval_every=0)
    with rundir.claim(run):  # what a kill during start-up leaves: the claimed folder and its config.toml
        from gankit import config as config_mod

        config_mod.save(config, run / "config.toml")
    code, _, err = _cli(capsys, "train", "--resume", run, "--no-progress")
    assert code == 0 and checkpoint.load_checkpoint(run)["epoch"] == 1


def test_divergence_at_the_first_step_says_nothing_was_kept(tmp_path, monkeypatch):
    from gankit.training import losses
    from gankit.training.health import Diverged
    from gankit.training.losses import Loss, bce_d_loss

    monkeypatch.setitem(losses.LOSSES, "bce", Loss(bce_d_loss, lambda fake: fake.mean() * float("nan")))
    with pytest.raises(Diverged, match="no checkpoint was written yet") as exc:
        train(tiny_config(eval_every=0, fused=False, subset=64), tmp_path / "run", progress=False)
    assert "intact" not in str(exc.value)


def test_a_new_run_that_fails_before_training_leaves_nothing(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    for out in (tmp_path / "a" / "b" / "run", tmp_path / "empty"):
        code, _, err = _cli(capsys, "train", "--data", f"folder:{tmp_path / 'none'}", "--out", out)
        assert code == 2 and "image folder not found" in err
    assert not (tmp_path / "a").exists()
    assert [p.name for p in (tmp_path / "empty").iterdir()] in ([], [rundir.LOCK])


# ------------------------------------------------------------------ 3. a torn or damaged metrics.jsonl


def test_resume_after_a_torn_metrics_line(mlp_run, tmp_path, capsys):
    run = _copy(mlp_run, tmp_path)
    with (run / "metrics.jsonl").open("a") as fh:
        fh.write('{"kind": "train", "epoch": 2, "step": 9, "loss_')
    assert _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")[0] == 0
    steps = [r["step"] for r in MetricsFile(run / "metrics.jsonl").read("train")]
    assert steps == list(range(1, 17))
    assert _cli(capsys, "report", run)[0] == 0


def test_garbage_in_metrics_is_one_line_and_nothing_is_rewritten(mlp_run, tmp_path, capsys):
    run = _copy(mlp_run, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines.insert(3, "\x00\x00garbage")
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    before = snapshot(run)
    for argv in (["train", "--resume", run, "--epochs", "2", "--no-progress"], ["report", run]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "line 4 is not a JSON record" in err and err.count("\n") == 1
    assert snapshot(run) == before


# ------------------------------------------------------------------ 4. odd images


def test_a_decompression_bomb_is_one_skipped_file(capsys, tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(40):
        Image.new("L", (30, 30), 5 * i).save(folder / f"{i}.png")
    Image.new("L", (20000, 20000)).save(folder / "bomb.png", optimize=True)  # small on disk, 400 Mpixels
    assert (folder / "bomb.png").stat().st_size < 1_000_000
    code, out, _ = _cli(capsys, "data", f"folder:{folder}", "-o", tmp_path / "grid.png")
    assert code == 0 and "images: 40" in out and "skipped 1 unreadable file(s): bomb.png" in out
    result = train(tiny_config(preset="dcgan", data=f"folder:{folder}", subset=0, batch_size=8, image_size=28,
                               eval_every=0), tmp_path / "run", progress=False)
    assert result.steps == 5


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    from gankit.data.folders import read_image

    ramp = (np.arange(64 * 64, dtype=np.uint32).reshape(64, 64) * 16).astype(np.uint16)  # 0 .. 65520
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    image = read_image(tmp_path / "deep.png", 64)[0].double()
    expected = torch.from_numpy(ramp.astype(np.float64) / 257).round()
    assert (image - expected).abs().max() <= 1
    assert (image == 255).double().mean() < 0.01  # clipping put 24.8% of the pixels at 255


# ------------------------------------------------------------------ 5. sizes


@pytest.mark.parametrize("argv, message", [
    (["generate", "RUN", "-n", "20000000", "-o", "x.npy"], "more than 10,000,000 images"),
    (["generate", "RUN", "--interpolate", "100000", "-o", "x.png"], "at most 100,000"),
    (["generate", "RUN", "-n", "5000", "-o", "x.png"], "too large to look at"),
    (["generate", "RUN", "--interpolate", "10", "-n", "5000", "--gif", "-o", "x.npy"], "too large to look at"),
    (["train", "--preset", "simple-gan", "--image-size", "100000"], "image_size must be in [8, 1024]"),
    (["train", "--preset", "simple-gan", "--image-size", "512"], "mlp model's weights grow"),
])
def test_sizes_nothing_can_hold_are_refused_before_allocating(capsys, mlp_run, tmp_path, monkeypatch, argv,
                                                                message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, *[mlp_run if a == "RUN" else a for a in argv])
    assert code == 2 and message in err and err.count("\n") == 1
    assert not list(tmp_path.iterdir())


def test_a_config_toml_with_a_huge_size_is_refused_on_resume(capsys, mlp_run, tmp_path):
    run = _copy(mlp_run, tmp_path)
    text = (run / "config.toml").read_text().replace("image_size = 28", "image_size = 100000")
    (run / "config.toml").write_text(text)
    before = snapshot(run)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert code == 2 and "config.toml: image_size must be in [8, 1024]" in err
    assert snapshot(run) == before


def test_a_large_npy_is_written_with_flat_memory(tmp_path, mlp_run):
    # 60,000 images of 28x28 float32 are 188 MB: the child's peak memory must not hold them (or twice them)
    code = ("import resource, sys; from gankit.inference.generate import generate; "
            "base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss; "
            f"generate({str(mlp_run)!r}, 60000, {str(tmp_path / 'big.npy')!r}); "
            "print((resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) // 1024)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    grown_mb = int(done.stdout.strip())
    assert grown_mb < 120, f"peak memory grew by {grown_mb} MB while writing a 188 MB array"
    array = np.load(tmp_path / "big.npy", mmap_mode="r")
    assert array.shape == (60000, 1, 28, 28) and array.dtype == np.float32
    first = np.load(_small(mlp_run, tmp_path))
    assert np.allclose(array[:5], first, atol=1e-6)  # the same seeded stream as a small request


def _small(run, tmp_path):
    from gankit.inference.generate import generate

    return generate(run, 5, tmp_path / "small.npy")


# ------------------------------------------------------------------ 6. generate never overwrites


def test_generate_refuses_to_overwrite_without_force(capsys, mlp_run, tmp_path):
    out = tmp_path / "g.png"
    out.write_bytes(b"precious")
    code, _, err = _cli(capsys, "generate", mlp_run, "-n", "4", "-o", out)
    assert code == 2 and "exists: pass --force" in err and out.read_bytes() == b"precious"
    assert _cli(capsys, "generate", mlp_run, "-n", "4", "-o", out, "--force")[0] == 0
    k = grid_scale(2 * 30 + 2)
    assert read_png(out).shape == (1, (2 * 30 + 2) * k, (2 * 30 + 2) * k)
    folder = tmp_path / "pngs"
    folder.mkdir()
    (folder / "0000.png").write_bytes(b"mine")
    code, _, err = _cli(capsys, "generate", mlp_run, "-n", "3", "-o", folder)
    assert code == 2 and "0000.png exists" in err and (folder / "0000.png").read_bytes() == b"mine"


@pytest.mark.parametrize("target", ["samples/epoch_001.png", "generator.npy", "samples", "."])
def test_generate_never_writes_into_a_run_directory(capsys, mlp_run, tmp_path, target):
    run = _copy(mlp_run, tmp_path)
    before = snapshot(run)
    code, _, err = _cli(capsys, "generate", run, "-n", "4", "-o", run / target, "--force")
    assert code == 2 and "is inside the run directory" in err
    assert snapshot(run) == before


# ------------------------------------------------------------------ 7. report escaping


def test_report_escapes_every_value_from_the_run(mlp_run, tmp_path):
    from gankit.report.run_page import write_report

    run = _copy(mlp_run, tmp_path)
    evil = "<script>alert(1)</script>"
    MetricsFile(run / "metrics.jsonl").append(
        {"kind": "epoch", "epoch": evil, "step": evil, "seconds": evil, "images_per_s": evil},
        {"kind": "eval", "source": evil, "epoch": evil, "n": evil, "fd": evil, "floor": {"fd": evil}},
        {"kind": "health", "issue": "collapse", "epoch": evil, "step": evil, "message": evil, "remedy": evil},
        {"kind": "train", "epoch": 1, "step": evil, "loss_D": evil, "loss_G": 1.0, "D(x)": 0.5, "D(G(z))": 0.5})
    page = write_report(run).read_text()
    assert "<script" not in page and page.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 6


# ------------------------------------------------------------------ 8. I/O errors


def test_a_full_disk_at_the_checkpoint_keeps_the_previous_one(mlp_run, tmp_path, monkeypatch, capsys):
    run = _copy(mlp_run, tmp_path)
    before = (run / "checkpoint.pt").read_bytes()

    def full(obj, path, *args, **kwargs):  # what torch.save raises when the disk fills up
        Path(path).write_bytes(b"partial")
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 1088 vs 1000\n"
                           "PytorchStreamWriter failed writing file data/3: file write failed")

    monkeypatch.setattr(torch, "save", full)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
    assert code == 2 and err.count("\n") == 1
    assert f"cannot write {run / 'checkpoint.pt'} (the write failed (" in err
    assert "file write failed" in err
    assert "the checkpoint of epoch 1 is intact" in err
    assert (run / "checkpoint.pt").read_bytes() == before and not list(run.glob(".*.tmp"))


def test_a_full_disk_at_an_export_is_one_line(mlp_run, tmp_path, monkeypatch, capsys):
    from safetensors import SafetensorError

    run = _copy(mlp_run, tmp_path)
    before = (run / "generator.safetensors").read_bytes()

    def full(*args, **kwargs):
        raise SafetensorError("Error while serializing: IoError(Os { code: 28, kind: StorageFull })")

    monkeypatch.setattr(generator_file, "save_file", full)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
    assert code == 2 and err.count("\n") == 1 and "StorageFull" in err
    assert f"cannot write {run / 'generator.safetensors'}" in err and "the checkpoint of epoch 1 is intact" in err
    assert (run / "generator.safetensors").read_bytes() == before and not list(run.glob(".*.tmp"))


def test_an_unwritable_place_is_one_line(capsys, tmp_path):
    code, _, err = _cli(capsys, "train", "--out", "/proc/gankit-run", "--set", "subset=64", "--no-progress")
    assert code == 2 and err.startswith("gankit: error: cannot write or read /proc/gankit-run") and err.count("\n") == 1


def test_evaluate_of_a_read_only_run_still_prints_its_numbers(capsys, mlp_run, monkeypatch):
    def refuse(self, *records):
        raise OSError(errno.EROFS, "Read-only file system", str(self.path))

    monkeypatch.setattr(MetricsFile, "append", refuse)
    code, out, err = _cli(capsys, "evaluate", mlp_run, "--json")
    assert code == 0 and json.loads(out)["fd"] > 0
    assert "not recorded in" in err and "Read-only file system" in err


# ------------------------------------------------------------------ 9. damaged run files


@pytest.mark.parametrize("text, message", [
    ("", "lacks model, data, image_size"),
    ("model = 'dcgan'\nlr = 'fast'\n", "lacks"),
    ("[[[", "not valid TOML"),
])
def test_a_bad_config_toml_is_one_line_for_resume_and_generate(capsys, mlp_run, tmp_path, text, message):
    run = _copy(mlp_run, tmp_path)
    (run / "config.toml").write_text(text)
    for argv in (["train", "--resume", run, "--epochs", "2"], ["generate", run, "-o", tmp_path / "x.png"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and message in err and err.count("\n") == 1


def test_a_legacy_pickle_checkpoint_is_one_line(capsys, mlp_run, tmp_path):
    run = _copy(mlp_run, tmp_path)
    torch.save({"generator": {}}, run / "checkpoint.pt", _use_new_zipfile_serialization=False)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2")
    assert code == 2 and err.count("\n") == 1 and "not a gankit checkpoint" in err


# ------------------------------------------------------------------ the floor's n


def test_fakes_and_floor_are_measured_at_the_same_n(capsys, mlp_run):
    code, out, err = _cli(capsys, "evaluate", mlp_run, "-n", "5000", "--json")
    record = json.loads(out)
    assert code == 0 and record["n"] == record["floor_n"] == 128  # 256 images: half B holds 128
    assert "measured at n = 128, not 5000" in err
    code, out, err = _cli(capsys, "evaluate", mlp_run, "--json")
    assert json.loads(out)["n"] == 128 and "note" not in err



# ------------------------------------------------------------------ found by a hostile pass


def test_a_lock_file_that_is_a_link_is_refused_and_its_target_untouched(capsys, mlp_run, tmp_path):
    run = _copy(mlp_run, tmp_path)
    (run / rundir.LOCK).unlink(missing_ok=True)
    (run / rundir.LOCK).symlink_to("checkpoint.pt")
    before = snapshot(run)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
    assert code == 2 and "is a link, not gankit's lock file" in err
    assert snapshot(run) == before


def test_a_failed_lock_on_a_new_folder_leaves_nothing(tmp_path, monkeypatch):
    def full(run_dir):
        raise OSError(errno.ENOSPC, "No space left on device", str(run_dir / rundir.LOCK))

    monkeypatch.setattr(rundir, "_lock", full)
    with pytest.raises(OSError):
        rundir.claim(tmp_path / "a" / "run")
    assert not (tmp_path / "a").exists()


@pytest.mark.parametrize("how", ["deleted", "dangling link"])
def test_a_trained_run_without_its_checkpoint_is_not_started_over(capsys, mlp_run, tmp_path, how):
    run = _copy(mlp_run, tmp_path)
    resume(run, {"epochs": 2}, progress=False)  # an export of epoch 2: a checkpoint existed
    (run / "checkpoint.pt").unlink()
    if how == "dangling link":
        (run / "checkpoint.pt").symlink_to(tmp_path / "nowhere.pt")
    before = snapshot(run)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
    assert code == 2 and "has trained (generator.safetensors is there) but its checkpoint.pt is missing" in err
    assert snapshot(run) == before


def test_generate_cannot_reach_a_run_through_a_link_or_a_relative_path(capsys, mlp_run, tmp_path, monkeypatch):
    run = _copy(mlp_run, tmp_path)
    (tmp_path / "link").symlink_to(run / "samples")
    before = snapshot(run)
    for out in (tmp_path / "link" / "epoch_001.png", tmp_path / "link"):
        code, _, err = _cli(capsys, "generate", run, "-n", "4", "-o", out, "--force")
        assert code == 2 and "is inside the run directory" in err
    monkeypatch.chdir(run / "samples")
    code, _, err = _cli(capsys, "generate", "..", "-n", "4", "-o", "epoch_001.png", "--force")
    assert code == 2 and "is inside the run directory" in err
    assert snapshot(run) == before


def test_generate_into_a_folder_with_files_needs_force(capsys, mlp_run, tmp_path):
    folder = tmp_path / "out"
    folder.mkdir()
    (folder / "0001.png").write_bytes(b"mine")
    code, _, err = _cli(capsys, "generate", mlp_run, "-n", "3", "-o", folder)
    assert code == 2 and "exists: pass --force" in err and (folder / "0001.png").read_bytes() == b"mine"


def test_generate_cleans_up_what_a_killed_generate_left(capsys, mlp_run, tmp_path):
    orphan = tmp_path / f".big.npy.gankit-{_dead_pid()}-abc12345.tmp"
    orphan.write_bytes(b"x" * 1000)
    assert _cli(capsys, "generate", mlp_run, "-n", "4", "-o", tmp_path / "big.npy")[0] == 0
    assert not orphan.exists() and np.load(tmp_path / "big.npy").shape == (4, 1, 28, 28)


@pytest.mark.parametrize("argv, message", [
    (["train", "--preset", "simple-gan", "--seed", str(2**64)], "seed must be in [0, 2**63)"),
    (["generate", "RUN", "--seed", str(2**64), "-o", "x.png"], "--seed must be a whole number in [0, 2**63)"),
])
def test_seeds_outside_64_bits_are_one_line(capsys, mlp_run, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    code, _, err = _cli(capsys, *[mlp_run if a == "RUN" else a for a in argv])
    assert code == 2 and message in err and err.count("\n") == 1


@pytest.mark.parametrize("tail", [b"# caf\xe9\n", b"zz = " + b"[" * 50000 + b"]" * 50000 + b"\n"])
def test_a_config_toml_not_utf8_or_nested_too_deep_is_one_line(capsys, mlp_run, tmp_path, tail):
    run = _copy(mlp_run, tmp_path)
    with (run / "config.toml").open("ab") as fh:
        fh.write(tail)
    for argv in (["train", "--resume", run, "--epochs", "2"], ["generate", run, "-o", tmp_path / "x.png"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "is not valid TOML" in err and err.count("\n") == 1


@pytest.mark.parametrize("line", [b"[" * 100000 + b"]" * 100000, b"[1, 2, 3]", b'{"kind": "caf\xe9"}'])
def test_a_whole_bad_last_line_in_metrics_is_damage_not_a_torn_write(capsys, mlp_run, tmp_path, line):
    run = _copy(mlp_run, tmp_path)
    with (run / "metrics.jsonl").open("ab") as fh:
        fh.write(line + b"\n")  # ends with its newline: written whole, so not torn by a crash
    before = snapshot(run)
    for argv in (["report", run], ["train", "--resume", run, "--epochs", "2", "--no-progress"]):
        code, _, err = _cli(capsys, *argv)
        assert code == 2 and "is not a JSON record" in err and err.count("\n") == 1
    assert snapshot(run) == before


def test_tensorboards_writer_thread_failing_prints_no_traceback(tmp_path, capsys):
    import threading

    from gankit.run.metrics_log import TrainingLog

    class _AsyncWriterThread(threading.Thread):  # the name of TensorBoard's writer thread
        def run(self):
            raise OSError(errno.ENOSPC, "No space left on device")

    original = threading.excepthook
    log = TrainingLog(tmp_path, 1, "metrics.jsonl", "tb")
    thread = _AsyncWriterThread()
    thread.start()
    thread.join()
    log.close()
    assert "Traceback" not in capsys.readouterr().err and threading.excepthook is original


def test_an_error_naming_a_path_with_a_newline_is_still_one_line(capsys, tmp_path):
    assert main(["train", "--data", "./no\nwhere\x1b[2J", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("gankit: error: ") and "./no\\nwhere\\x1b[2J" in err
    assert not (tmp_path / "r").exists()


def test_a_nul_character_in_a_config_toml_is_one_line(capsys, tmp_path):
    (tmp_path / "nul.toml").write_text('data = "folder:./a\\u0000b"\n')
    assert main(["train", "--config", str(tmp_path / "nul.toml"), "--out", str(tmp_path / "r")]) == 2
    assert "data holds a NUL character" in capsys.readouterr().err and not (tmp_path / "r").exists()
