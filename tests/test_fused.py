"""The hand-written mlp + bce step (gankit.training.fused) against the autograd loop."""

from __future__ import annotations

import json

import pytest
import torch

from gankit import config
from gankit.run.checkpoint import load_checkpoint
from gankit.training.launch import train

from .conftest import tiny_config


def _fused(cfg) -> bool:
    """Would this config train through the fused step on the CPU (the plan of its resolved config)?"""
    return config.plan(config.resolve_for_data(cfg, 10, 1), "cpu").fused


def test_fused_mlp_step_matches_autograd(tmp_path):
    rows = {}
    for fused in (True, False):
        cfg = tiny_config(fused=fused, label_smoothing=0.1, ema=0.9, eval_every=0)
        assert _fused(cfg) == fused
        train(cfg, tmp_path / str(fused), progress=False)
        rows[fused] = [json.loads(x) for x in (tmp_path / str(fused) / "metrics.jsonl").read_text().splitlines()
                       if json.loads(x)["kind"] == "train"]
    assert len(rows[True]) == len(rows[False]) == 8
    for a, b in zip(rows[True], rows[False]):
        for key in ("loss_D", "loss_G", "D(x)", "D(G(z))"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    fast, slow = load_checkpoint(tmp_path / "True"), load_checkpoint(tmp_path / "False")
    for name in ("generator", "discriminator"):
        for key, value in fast[name].items():
            assert torch.allclose(value, slow[name][key], atol=1e-5), (name, key)
    assert not _fused(tiny_config(loss="hinge")) and not _fused(tiny_config(preset="dcgan"))


def test_fused_step_trains_alike_through_torch_optim(tmp_path, monkeypatch):
    # where gankit.training.adam does not serve the device, the optimizers are torch.optim.Adam: the fused step hands
    # them its gradients through .grad, to the same result
    import gankit.training.trainer

    def rows(name):
        return [json.loads(x) for x in (tmp_path / name / "metrics.jsonl").read_text().splitlines()
                if json.loads(x)["kind"] == "train"]

    cfg = tiny_config(eval_every=0)
    train(cfg, tmp_path / "ours", progress=False)
    made = []

    def torch_adam(params, lr, betas):
        made.append(torch.optim.Adam(params, lr=lr, betas=betas, fused=True))
        return made[-1]

    monkeypatch.setattr(gankit.training.trainer, "adam", torch_adam)
    train(cfg, tmp_path / "torch", progress=False)
    assert len(made) == 2 and rows("ours") == rows("torch")
    ours, theirs = load_checkpoint(tmp_path / "ours"), load_checkpoint(tmp_path / "torch")
    assert all(torch.equal(v, theirs["generator"][k]) for k, v in ours["generator"].items())
