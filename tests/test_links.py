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
