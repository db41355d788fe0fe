"""The discriminator detector of a run trained with `holdout`: its evaluations measure real images with exactly
the run's held-out images (the trainer skipped them, so D never saw them); without holdout it says how to get
such images."""

from __future__ import annotations

import json

import pytest
import torch

from gankit.data import loading
from gankit.detect import inputs, store
from gankit.detect.evaluation import evaluate_detector
from gankit.errors import GankitError
from gankit.quality.evaluator import held_out
from gankit.run.generator_file import load_run_config
from gankit.training.launch import train

from .conftest import tiny_config
from .test_safety import _cli


def _run(root, holdout):
    """A 1-epoch simple-gan run on 256 digits of mnist5k, no evaluations."""
    run = root / f"run-{holdout}"
    train(tiny_config(holdout=holdout, eval_every=0), run, progress=False)
    return run


def test_the_discriminator_is_evaluated_on_exactly_its_runs_held_out_images(tmp_path, capsys, scored):
    run = _run(tmp_path, 0.2)
    data = loading.load_for(load_run_config(run))
    held = held_out(data, 0.2)  # the indices the trainer skipped
    trained = torch.ones(len(data), dtype=torch.bool)
    trained[held] = False
    code, text, _ = _cli(capsys, "detect", "train", "--method", "discriminator", "--run", run, "--out",
                         tmp_path / "d")
    assert code == 0 and f"{len(held)} held-out ones (holdout=0.2)" in text
    stored = store.read(tmp_path / "d")
    assert len(held) == 51 and len(stored.hashes("held")) == 51 and len(stored.hashes("real")) == 256 - 51
    result = evaluate_detector(tmp_path / "d", "mnist5k", [str(run)], roc=False, record=False)
    real_scored = inputs.image_hashes(scored[0][:result.real["n"]])
    assert result.real["n"] == 51 and result.real["held_out"] is True
    assert sorted(real_scored.tolist()) == sorted(inputs.image_hashes(data.images[held]).tolist())
    assert not torch.isin(real_scored, inputs.image_hashes(data.images[trained])).any()  # none D trained on
    assert any("held-out images (holdout=0.2)" in note for note in result.notes)
    # the run's own data alone (a folder D trained on, packed): its held-out images are still there to measure
    loading.write_pack(data, tmp_path / "own")
    code, text, err = _cli(capsys, "detect", "eval", tmp_path / "d", "--real", f"packed:{tmp_path / 'own'}",
                           "--fake", run, "--json")
    row = json.loads(text)
    assert code == 0 and row["real"] == {"source": f"packed:{tmp_path / 'own'}", "n": 51, "left_out": 205,
                                         "held_out": True}
    assert "D never saw" in err


def test_without_holdout_the_discriminator_says_how_to_get_unseen_real_images(tmp_path, capsys):
    run = _run(tmp_path, 0.0)
    code, text, _ = _cli(capsys, "detect", "train", "--method", "discriminator", "--run", run, "--out",
                         tmp_path / "d")
    assert code == 0 and "--set holdout=0.1" in text
    assert len(store.read(tmp_path / "d").hashes("held")) == 0
    # today's behaviour: real images of the source that D did not train on, and now a note on holdout
    result = evaluate_detector(tmp_path / "d", "mnist5k", [str(run)], n=50, roc=False, record=False)
    assert result.real["n"] == 50 and "held_out" not in result.real
    assert any("--set holdout=0.1" in note and "left out" in note for note in result.notes)
    code, _, err = _cli(capsys, "detect", "eval", tmp_path / "d", "--real", "mnist5k", "--fake", run, "-n", "50")
    assert code == 0 and "--set holdout=0.1" in err
    # only the run's training images: refused, in one line that says the same
    loading.write_pack(loading.load_for(load_run_config(run)), tmp_path / "own")
    with pytest.raises(GankitError, match=r"every real image .*--set holdout=0\.1"):
        evaluate_detector(tmp_path / "d", f"packed:{tmp_path / 'own'}", [str(run)], roc=False, record=False)
    code, out, err = _cli(capsys, "detect", "eval", tmp_path / "d", "--real", f"packed:{tmp_path / 'own'}",
                          "--fake", run)
    assert code == 2 and out == "" and len(err.strip().splitlines()) == 1 and "--set holdout=0.1" in err
