"""Writes never go through links: a symlink or a hard-linked copy of a run's file is replaced or refused, never
written through (issue 25, class 1)."""

from __future__ import annotations

import os
import shutil
import subprocess

from gankit.cli import main
from gankit.training.launch import resume
from tests.conftest import snapshot


def test_generate_into_a_folder_of_links_replaces_the_links_not_their_targets(mlp_run, tmp_path, capsys):
    run = shutil.copytree(mlp_run, tmp_path / "run")
    before = snapshot(run)
    out = tmp_path / "out"
    out.mkdir()
    os.symlink(run / "generator.safetensors", out / "0000.png")
    os.symlink(run / "checkpoint.pt", out / "0001.png")
    assert main(["generate", str(run), "-n", "3", "-o", str(out), "--force"]) == 0
    assert snapshot(run) == before  # the run's files are what they were
    assert not (out / "0000.png").is_symlink() and (out / "0000.png").read_bytes()[:4] == b"\x89PNG"


def test_evaluate_refuses_a_symlinked_metrics_log_and_leaves_its_target(mlp_run, tmp_path, capsys):
    run = shutil.copytree(mlp_run, tmp_path / "run")
    elsewhere = tmp_path / "precious.jsonl"
    elsewhere.write_text('{"mine": 1}\n{"torn": ')
    (run / "metrics.jsonl").unlink()
    os.symlink(elsewhere, run / "metrics.jsonl")
    assert main(["evaluate", str(run), "-n", "40"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a symbolic link" in err
    assert elsewhere.read_text() == '{"mine": 1}\n{"torn": '  # not cut, not appended to


def test_resuming_a_hard_linked_copy_leaves_the_original_run_as_it_was(mlp_run, tmp_path):
    original = shutil.copytree(mlp_run, tmp_path / "original")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-al", str(original), str(copy)], check=True)
    before = snapshot(original)
    resume(copy, {"epochs": 2}, progress=False)
    assert snapshot(original) == before  # metrics.jsonl, loss_curves.png, checkpoint: none written in place
    assert (copy / "metrics.jsonl").stat().st_nlink == 1 and (copy / "loss_curves.png").stat().st_nlink == 1


def _one_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    return err


def _killed_in_epoch_1(mlp_run, folder):
    """What a run killed during its first epoch leaves: config.toml and metrics.jsonl, no checkpoint yet."""
    folder.mkdir()
    shutil.copy(mlp_run / "config.toml", folder / "config.toml")
    (folder / "metrics.jsonl").write_text('{"kind": "train", "step": 4}\n')
    return folder


def test_every_writing_command_keeps_out_of_a_run_killed_in_its_first_epoch(mlp_run, tmp_path, capsys):
    killed = _killed_in_epoch_1(mlp_run, tmp_path / "killed")
    before = snapshot(killed)
    for argv in (["generate", str(mlp_run), "-n", "2", "-o", str(killed / "grid.png")],
                 ["generate", str(mlp_run), "-n", "2", "-o", str(killed)],
                 ["generate", str(mlp_run), "-n", "2", "-o", str(killed / "samples")],
                 ["export", str(mlp_run), "-o", str(killed / "g.onnx")],
                 ["detect", "train", "--real", "mnist5k", "--fake", str(mlp_run), "--out", str(killed / "det")],
                 ["classifier", "train", "--out", str(killed / "c.safetensors")],
                 ["data", "mnist5k", "--pack", str(killed / "pack"), "-o", str(tmp_path / "grid.png")]):
        assert main(argv) == 2, argv
        assert "inside the run directory" in _one_line(capsys), argv
    assert snapshot(killed) == before and sorted(p.name for p in killed.iterdir()) == ["config.toml", "metrics.jsonl"]


def test_classifier_train_obeys_the_output_rules_before_any_work(mlp_run, tmp_path, capsys):
    run = shutil.copytree(mlp_run, tmp_path / "run")
    before = snapshot(run)
    assert main(["classifier", "train", "--out", str(run / "generator.safetensors")]) == 2
    assert "inside the run directory" in _one_line(capsys)
    assert main(["classifier", "train", "--out", str(run)]) == 2  # a folder: RUN/classifier.safetensors
    assert "inside the run directory" in _one_line(capsys)
    assert snapshot(run) == before
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"my own file")
    assert main(["classifier", "train", "--out", str(mine)]) == 2
    assert "exists: pass --force" in _one_line(capsys) and mine.read_bytes() == b"my own file"


def test_a_detector_inside_a_run_is_neither_evaluated_into_nor_reported_into(mlp_run, tmp_path, capsys):
    from gankit.detect.training import train_detector

    run = shutil.copytree(mlp_run, tmp_path / "run")
    made = train_detector(None, [], "discriminator", tmp_path / "det", run=str(run), progress=False)
    shutil.move(made.path, run / "det")  # moved into the run by hand
    before = snapshot(run)
    assert main(["detect", "eval", str(run / "det"), "--real", "mnist5k", "--fake", str(run), "-n", "20"]) == 2
    assert "is inside the run directory" in _one_line(capsys)
    assert main(["report", str(run / "det")]) == 2
    assert "is inside the run directory" in _one_line(capsys)
    assert snapshot(run) == before


def test_only_temporaries_that_gankit_provably_made_are_cleared(mlp_run, tmp_path, capsys):
    from gankit.files import atomic_write

    out = tmp_path / "out"
    out.mkdir()
    (out / ".grid.png.draft.tmp").write_text("my draft")  # a user's own file that looks like a temporary
    dead = subprocess.Popen(["true"])
    dead.wait()
    orphan = out / f".grid.png.gankit-{dead.pid}-abcd1234.tmp"  # a gankit writer killed mid-write
    orphan.write_bytes(b"half")
    live = out / f".grid.png.gankit-{os.getpid()}-abcd1234.tmp"  # one being written now
    live.write_bytes(b"busy")
    assert main(["generate", str(mlp_run), "-n", "4", "-o", str(out / "grid.png")]) == 0
    assert (out / ".grid.png.draft.tmp").read_text() == "my draft"
    assert not orphan.exists() and live.exists()

    def fails(tmp):
        open(tmp, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    try:
        atomic_write(out / "x.bin", fails)
    except OSError as exc:
        assert exc.filename == str(out / "x.bin")
    assert sorted(p.name for p in out.iterdir()) == sorted([".grid.png.draft.tmp", live.name, "grid.png"])


def test_a_symlinked_copy_of_a_run_never_writes_into_the_original(mlp_run, tmp_path, capsys):
    original = shutil.copytree(mlp_run, tmp_path / "original")
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-rs", str(original), str(copy)], check=True)
    before = snapshot(original)
    assert main(["generate", str(copy), "-n", "4", "-o", str(tmp_path / "g.png")]) == 0
    assert main(["report", str(copy)]) == 0
    assert main(["evaluate", str(copy), "-n", "40"]) == 2  # its metrics.jsonl is a link: refused, not followed
    assert "symbolic link" in capsys.readouterr().err
    assert not (copy / "copies.png").exists() or (copy / "copies.png").is_symlink()  # refused before any work
    assert main(["train", "--resume", str(copy), "--epochs", "2", "--no-progress"]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1
    assert snapshot(original) == before


def test_generate_force_replaces_a_folder_of_samples_whole_and_never_a_users_folder(mlp_run, tmp_path, capsys):
    out = tmp_path / "samples"
    assert main(["generate", str(mlp_run), "-n", "30", "-o", str(out)]) == 0
    assert main(["generate", str(mlp_run), "-n", "5", "-o", str(out)]) == 2  # no --force: refused
    assert "pass --force" in _one_line(capsys)
    assert main(["generate", str(mlp_run), "-n", "5", "-o", str(out), "--force"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [f"{i:04d}.png" for i in range(5)]  # no old one beside
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    assert main(["generate", str(mlp_run), "-n", "5", "-o", str(out), "--force"]) == 2
    assert "notes.txt" in _one_line(capsys) and snapshot(out) == before


def test_every_figure_a_resumed_run_rewrites_replaces_links_instead_of_writing_through(mlp_run, tmp_path):
    run = shutil.copytree(mlp_run, tmp_path / "run")
    victims = {}
    for name in ("loss_curves.png", "progress.gif", "samples/epoch_002.png"):
        victim = tmp_path / f"victim-{name.replace('/', '-')}"
        victim.write_bytes(b"not yours")
        (run / name).unlink(missing_ok=True)
        os.symlink(victim, run / name)
        victims[name] = victim
    resume(run, {"epochs": 2}, progress=False)
    for name, victim in victims.items():
        assert victim.read_bytes() == b"not yours", name
        assert not (run / name).is_symlink() and (run / name).is_file(), name


def test_a_run_whose_samples_folder_is_a_link_is_refused_before_writing(mlp_run, tmp_path, capsys):
    run = shutil.copytree(mlp_run, tmp_path / "run")
    other = shutil.copytree(run / "samples", tmp_path / "other-samples")
    (other / "epoch_002.png").write_bytes(b"another run's grid")
    shutil.rmtree(run / "samples")
    os.symlink(other, run / "samples")
    before, theirs = snapshot(run), snapshot(other)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    assert "samples is a symbolic link" in _one_line(capsys)
    assert snapshot(other) == theirs and snapshot(run) == before


def test_a_hard_linked_lock_file_is_replaced_never_written_through(tmp_path):
    """Second pass: RUN_DIR/.lock hard-linked to a user's file had the PID written into it (the file cut to one
    line), and the two runs of a `cp -al` copy shared one lock: resuming the copy while the original was resumed
    was refused as 'being written by another gankit process'. The claim gives .lock an inode of its own."""
    from gankit.run import lock as rundir

    run, notes = tmp_path / "run", tmp_path / "notes.txt"
    run.mkdir()
    notes.write_text("a user's notes\n")
    os.link(notes, run / ".lock")
    with rundir.claim(run, resume=True):
        assert notes.read_text() == "a user's notes\n" and (run / ".lock").stat().st_nlink == 1
    assert notes.read_text() == "a user's notes\n"

    original, copy = tmp_path / "original", tmp_path / "copy"
    original.mkdir()
    (original / "config.toml").write_text("")
    (original / ".lock").write_text("")
    subprocess.run(["cp", "-al", str(original), str(copy)], check=True)
    with rundir.claim(original, resume=True), rundir.claim(copy, resume=True) as held:
        assert held.run_dir == copy  # each run has a lock of its own
        assert not os.path.samestat(os.stat(original / ".lock"), os.stat(copy / ".lock"))
