"""Faults and concurrency on the run directory: runs started together, a held run, refusals that leave nothing,
non-UTF-8 names, a full disk at any write, an unwritable HOME, a kill while a file is rewritten."""

from __future__ import annotations

import errno
import fcntl
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from gankit.cli import main
from gankit.run import checkpoint, layout
from gankit.run import lock as rundir
from gankit.training import launch

from .conftest import snapshot

SMALL = ["--preset", "simple-gan", "--set", "subset=64", "--set", "eval_every=0", "--epochs", "1", "--no-progress"]


def _cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _one_line(code: int, err: str) -> None:
    assert code == 2 and err.count("\n") == 1 and err.startswith("gankit: error: "), err


# ------------------------------------------------------------------ runs started together, a held run


def test_a_default_name_taken_in_the_same_second_gets_a_suffix(capsys, tmp_path, monkeypatch):
    name = tmp_path / "runs" / "simple-gan-mnist5k-20250101-120000"
    monkeypatch.setattr(launch, "default_run_dir", lambda cfg: name)  # both started in the same second
    with rundir.claim(name):  # the other run of the sweep holds the name
        code, out, err = _cli(capsys, "train", *SMALL)
        assert code == 0, err
        assert [p.name for p in name.iterdir()] == [".lock"]  # the other run's folder is not touched
    second = name.with_name(name.name + "-2")
    assert f"run: {second}" in out and checkpoint.load_checkpoint(second)["epoch"] == 1


def test_numbered_claims_never_share_a_folder(tmp_path):
    name = tmp_path / "runs" / "run"
    locks = [rundir.claim(name, numbered=True) for _ in range(3)]
    try:
        assert [lock.run_dir.name for lock in locks] == ["run", "run-2", "run-3"]
    finally:
        for lock in locks:
            lock.release()
    assert list((tmp_path / "runs").iterdir()) == []  # nothing was written: the claims leave nothing behind


def test_a_holder_that_has_not_written_its_pid_yet_is_still_named(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.toml").write_text("")
    # the holder has taken the flock; the file still names a process that has ended (an earlier writer)
    ended = subprocess.Popen([sys.executable, "-c", "pass"])
    ended.wait()
    (run / ".lock").write_text(f"{ended.pid}\n")
    fd = os.open(run / ".lock", os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)

    def write_pid() -> None:  # what the holder does a moment after it took the lock
        time.sleep(0.3)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)

    writer = threading.Thread(target=write_pid)
    writer.start()
    try:
        with pytest.raises(Exception, match=rf"another gankit process \(PID {os.getpid()}\)"):
            rundir.claim(run, resume=True)
    finally:
        writer.join()
        os.close(fd)


def test_a_second_resume_of_a_held_run_names_the_holders_pid(capsys, mlp_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    holder = subprocess.Popen([sys.executable, "-c", "import time; from gankit.run import lock; "
                               f"lock.claim({str(run)!r}, resume=True); print('held', flush=True); time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = snapshot(run)
        code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
        _one_line(code, err)
        assert f"being written by another gankit process (PID {holder.pid})" in err
        assert snapshot(run) == before
    finally:
        holder.kill()
        holder.wait()


# ------------------------------------------------------------------ a refusal leaves nothing behind


def test_a_refused_out_leaves_nothing_in_the_users_folder(capsys, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("my notes")
    before = snapshot(folder)
    code, _, err = _cli(capsys, "train", "--out", folder, *SMALL)
    _one_line(code, err)
    assert "already exists" in err
    assert sorted(p.name for p in folder.iterdir()) == ["notes.txt"] and snapshot(folder) == before


def test_a_run_refused_after_its_claim_leaves_an_empty_folder_empty(capsys, tmp_path):
    folder = tmp_path / "empty"
    folder.mkdir()
    code, _, err = _cli(capsys, "train", "--out", folder, *SMALL, "--data", f"folder:{tmp_path / 'missing'}")
    _one_line(code, err)
    assert list(folder.iterdir()) == []  # neither config.toml nor .lock; the user's folder stays
    code, _, err = _cli(capsys, "train", "--out", tmp_path / "new" / "run", *SMALL,
                        "--data", f"folder:{tmp_path / 'missing'}")
    _one_line(code, err)
    assert list(tmp_path.iterdir()) == [folder]  # the folders made for it are gone too


# ------------------------------------------------------------------ a name that is not UTF-8


def test_a_non_utf8_out_is_refused_before_anything_is_made(capsys, tmp_path):
    name = tmp_path / os.fsdecode(b"run\xff")
    code, _, err = _cli(capsys, "train", "--out", name / "sub", *SMALL)
    _one_line(code, err)
    assert "not a valid UTF-8 name" in err and "\\udcff" in err
    assert list(tmp_path.iterdir()) == []


def test_a_run_renamed_to_a_non_utf8_name_is_refused_on_resume(capsys, mlp_run, tmp_path):
    run = tmp_path / os.fsdecode(b"run\xe9")
    shutil.copytree(mlp_run, run)
    before = snapshot(run)
    code, _, err = _cli(capsys, "train", "--resume", run, "--epochs", "2", "--no-progress")
    _one_line(code, err)
    assert "not a valid UTF-8 name" in err and snapshot(run) == before



@pytest.mark.parametrize("argv", [["generate", "RUN", "-n", "4", "-o", "OUT/s.png"], ["report", "RUN"],
                                  ["evaluate", "RUN", "-n", "10"], ["detect", "eval", "RUN", "--real", "mnist5k",
                                                                    "--fake", "RUN"]],
                         ids=["generate", "report", "evaluate", "detect-eval"])
def test_a_non_utf8_run_or_detector_is_named_for_its_name_not_called_corrupt(capsys, mlp_run, tmp_path, argv):
    run = tmp_path / os.fsdecode(b"run\xff")
    shutil.copytree(mlp_run, run)
    before = snapshot(run)
    code, _, err = _cli(capsys, *[str(run) if a == "RUN" else a.replace("OUT", str(tmp_path)) for a in argv])
    _one_line(code, err)
    assert "not a valid UTF-8 name" in err and "rename the" in err and "corrupt" not in err
    assert snapshot(run) == before


@pytest.mark.parametrize("argv", [["classifier", "train", "--epochs", "1", "--out", "OUT/c.safetensors"],
                                  ["detect", "train", "--method", "spectrum", "--real", "mnist5k", "--fake", "RUN",
                                   "--out", "OUT/det"]],
                         ids=["classifier", "detector"])
def test_a_non_utf8_safetensors_output_is_refused_before_any_work(capsys, mlp_run, tmp_path, argv):
    out = tmp_path / os.fsdecode(b"out\xe9")
    code, _, err = _cli(capsys, *[str(mlp_run) if a == "RUN" else a.replace("OUT", str(out)) for a in argv])
    _one_line(code, err)
    assert "not a valid UTF-8 name" in err and list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ a full disk, whichever file fails


def _enospc() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))  # as a write() raises it: no file named


def _fail_metrics(monkeypatch):
    from gankit.run.metrics_log import MetricsFile

    opened = MetricsFile.open

    class Full:
        def __init__(self, fh):
            self.fh = fh

        def write(self, text):
            if '"epoch": 2' in text:
                raise _enospc()
            return self.fh.write(text)

        def __getattr__(self, name):
            return getattr(self.fh, name)

    monkeypatch.setattr(MetricsFile, "open", lambda self: Full(opened(self)))
    return "metrics.jsonl"


def _fail_grid(monkeypatch):
    from gankit import images

    save = images.save_grid

    def full(grid, path, *args, **kwargs):
        if layout.epoch_grid(2) in str(path):
            raise _enospc()
        return save(grid, path, *args, **kwargs)

    monkeypatch.setattr(images, "save_grid", full)
    return layout.epoch_grid(2)


def _fail_tensorboard(monkeypatch):
    from torch.utils.tensorboard import SummaryWriter

    add = SummaryWriter.add_image

    def full(self, tag, grid, step, *args, **kwargs):
        if tag == "samples" and step > 2:  # 64 images, batch 32: 2 steps an epoch
            raise _enospc()  # what TensorBoard's writer thread hands the next call
        return add(self, tag, grid, step, *args, **kwargs)

    monkeypatch.setattr(SummaryWriter, "add_image", full)
    return "tb"


def _fail_generator(monkeypatch):
    from gankit.run import generator_file

    save, export = generator_file.save_file, generator_file.export_generator

    def full(*args, **kwargs):
        raise _enospc()

    def at_epoch_2(*args, **kwargs):
        monkeypatch.setattr(generator_file, "save_file", full if kwargs.get("epoch") == 2 else save)
        return export(*args, **kwargs)

    monkeypatch.setattr(generator_file, "export_generator", at_epoch_2)
    return layout.GENERATOR


def _fail_checkpoint(monkeypatch):
    import torch

    save = torch.save

    def full(obj, f, *args, **kwargs):
        if isinstance(obj, dict) and obj.get("epoch") == 2:
            raise _enospc()
        return save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", full)
    return layout.CHECKPOINT


@pytest.mark.parametrize("fail", [_fail_metrics, _fail_grid, _fail_tensorboard, _fail_generator, _fail_checkpoint],
                         ids=["metrics", "grid", "tb", "generator", "checkpoint"])
def test_a_full_disk_in_epoch_2_names_the_file_and_the_intact_checkpoint(capsys, tmp_path, monkeypatch, fail):
    run = tmp_path / "run"
    name = fail(monkeypatch)
    code, _, err = _cli(capsys, "train", "--out", run, *SMALL[:-3], "--epochs", "3", "--no-progress")
    _one_line(code, err)
    assert f"cannot write {run}" in err and name in err and "No space left on device" in err, err
    assert f"the checkpoint of epoch 1 is intact (free space, then gankit train --resume {run})" in err
    assert checkpoint.load_checkpoint(run)["epoch"] == 1


def test_a_full_disk_at_the_first_write_says_nothing_was_checkpointed(capsys, tmp_path, monkeypatch):
    from gankit import images

    def full(*args, **kwargs):
        raise _enospc()

    monkeypatch.setattr(images, "save_grid", full)  # reals.png, the first image a run writes
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--out", run, *SMALL)
    _one_line(code, err)
    assert f"cannot write {run / layout.REALS}" in err and "no checkpoint was written yet" in err
    assert "free space, then gankit train --resume" in err


def test_a_full_disk_after_the_last_checkpoint_says_training_finished(capsys, tmp_path, monkeypatch):
    from gankit.training import epoch_end

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(args[1]))

    monkeypatch.setattr(epoch_end, "plot_loss_curves", full)
    run = tmp_path / "run"
    code, _, err = _cli(capsys, "train", "--out", run, *SMALL)
    _one_line(code, err)
    assert f"cannot write {run / layout.LOSS_CURVES}" in err
    assert "training finished: the checkpoint of epoch 1 is intact" in err and "--resume" not in err


# ------------------------------------------------------------------ matplotlib under an unwritable HOME


def test_an_unwritable_home_lets_no_matplotlib_warning_through(mlp_run, tmp_path):
    (tmp_path / "file").write_text("")
    home = tmp_path / "file" / "home"  # no folder can be made under it, not even by root
    env = {k: v for k, v in os.environ.items() if k not in ("MPLCONFIGDIR", "XDG_CONFIG_HOME", "XDG_CACHE_HOME")}
    env.update(HOME=str(home), GANKIT_CACHE_DIR=str(tmp_path / "cache"))
    import matplotlib  # its font list, copied where gankit points it: the child need not build it again (5 s)

    shutil.copytree(matplotlib.get_cachedir(), tmp_path / "cache" / "matplotlib",
                    ignore=lambda folder, names: [n for n in names if not n.startswith("fontlist")])
    out = tmp_path / "curves.png"
    script = ("from gankit.report.plots import plot_loss_curves; "
              f"plot_loss_curves({str(mlp_run / 'metrics.jsonl')!r}, {str(out)!r})")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stderr == "", done.stderr  # no "Matplotlib created a temporary ..."
    assert out.is_file()


# ------------------------------------------------------------------ a kill while a file is rewritten

KILL_SCRIPT = r"""
import os, signal, sys
from pathlib import Path
run = Path(sys.argv[1])

def killed_inside(target, patch):
    pid = os.fork()
    if pid == 0:  # the child starts the rewrite and is killed half way through the new file
        def half(*args, **kwargs):
            path = next(a for a in args if isinstance(a, (str, Path)))
            with open(path, "wb") as fh:
                fh.write(b"half a file")
            os.kill(os.getpid(), signal.SIGKILL)
        patch(half)
        target()
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status

import matplotlib.figure
from gankit import config, images
from gankit.report import plots
from gankit.run import generator_file
cfg = generator_file.load_run_config(run)
killed_inside(lambda: plots.plot_loss_curves(run / "metrics.jsonl", run / "loss_curves.png"),
              lambda f: setattr(matplotlib.figure.Figure, "savefig", lambda self, *a, **k: f(*a)))
killed_inside(lambda: plots.write_progress_gif(run), lambda f: setattr(images, "save_gif", lambda fr, p, **k: f(p)))
killed_inside(lambda: config.save(cfg, run / "config.toml"),
              lambda f: setattr(Path, "write_text", lambda self, *a, **k: f(self)))
g, _ = generator_file.load_generator(run)
killed_inside(lambda: generator_file.export_generator(g, cfg, run, name="generator.safetensors", epoch=1, step=8),
              lambda f: setattr(generator_file, "save_file", lambda t, p, **k: f(p)))
print("killed 4 times")
"""


def test_a_kill_while_a_run_rewrites_a_file_leaves_the_old_one_whole(mlp_run, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    before = snapshot(run)
    done = subprocess.run([sys.executable, "-c", KILL_SCRIPT, str(run)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "killed 4 times" in done.stdout, done.stderr
    after = snapshot(run)
    for name in (layout.LOSS_CURVES, layout.PROGRESS_GIF, layout.CONFIG, layout.GENERATOR):
        assert after[name] == before[name], name  # the old file, whole
    orphans = set(after) - set(before)
    assert orphans and all(Path(n).name.startswith(".") and n.endswith(".tmp") for n in orphans)
    with rundir.claim(run, resume=True):  # the next writer removes what the killed one left
        pass
    assert snapshot(run).keys() == before.keys()


def test_sigterm_stops_a_command_as_ctrl_c_does_and_leaves_no_partial_output(mlp_run, tmp_path):
    # `timeout` or `kill` while generate writes a large folder: its hidden work folder is removed, one line, 130
    import signal

    out = tmp_path / "fakes"
    proc = subprocess.Popen([sys.executable, "-m", "gankit", "generate", str(mlp_run), "-n", "400000", "-o", str(out)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    while not any(p.name.startswith(".fakes.gankit-") for p in tmp_path.iterdir()) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-2000:]
    assert err.strip().startswith("gankit: interrupted; ") and len(err.strip().splitlines()) == 1, err[-2000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == [], list(tmp_path.iterdir())  # nothing left, not out either
