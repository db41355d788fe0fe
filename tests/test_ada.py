"""Adaptive discriminator augmentation: identity at p = 0, differentiable, p driven by r_t toward the target,
logged, and restored exactly on resume."""

from __future__ import annotations

import json

import pytest
import torch

from gankit.errors import GankitError
from gankit.run import checkpoint
from gankit.training.ada import ADA
from gankit.training.launch import resume, train
from tests.conftest import tiny_config


def _ada(**kw):
    return ADA(kw.pop("target", 0.6), kw.pop("kimg", 1.0), kw.pop("batch", 32), torch.device("cpu"),
               torch.Generator().manual_seed(0), **kw)


def test_p_zero_is_the_identity_and_p_one_augments_differentiably():
    x = torch.rand(16, 3, 16, 16) * 2 - 1
    ada = _ada()
    assert torch.allclose(ada(x), x, atol=1e-5)
    ada.p.fill_(1.0)
    x.requires_grad_(True)
    out = ada(x)
    assert out.shape == x.shape and (out - x).abs().mean() > 0.1
    out.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # G's gradient flows through the augmentation


def test_p_moves_every_interval_toward_the_target():
    ada = _ada(kimg=1.0, batch=32)  # each adjustment: 32 * 4 / 1000 = 0.128
    for _ in range(3):
        ada.observe(torch.tensor(1.0))  # D sure of every real: overfitting
    assert float(ada.p) == 0.0  # not yet: every 4 D steps
    ada.observe(torch.tensor(1.0))
    assert float(ada.p) == pytest.approx(0.128)
    for _ in range(4):
        ada.observe(torch.tensor(0.2))  # below the target: less augmentation
    assert float(ada.p) == pytest.approx(0.0)
    for _ in range(4):
        ada.observe(torch.tensor(-1.0))
    assert float(ada.p) == 0.0  # never below 0
    for _ in range(40):
        ada.observe(torch.tensor(1.0))
    assert float(ada.p) == 1.0  # never above 1


def test_a_crafted_ada_state_is_one_line():
    ada = _ada()
    for bad in ({}, {"p": torch.tensor(2.0), "signs": torch.tensor(0.0), "seen": 0},
                {"p": torch.tensor(0.5), "signs": torch.tensor(float("nan")), "seen": 0},
                {"p": torch.tensor(0.5), "signs": torch.tensor(0.0), "seen": -10}, None):
        with pytest.raises(GankitError):
            ada.load_state_dict(bad)


def test_ada_trains_logs_p_and_resumes_exactly(tmp_path):
    sets = dict(preset="dcgan", ada=True, ada_kimg=0.5, subset=128, eval_every=0, ema=0)
    train(tiny_config(**sets, epochs=2), tmp_path / "straight", progress=False)
    train(tiny_config(**sets, epochs=1), tmp_path / "split", progress=False)
    resume(tmp_path / "split", {"epochs": 2}, progress=False)
    rows = [[r for r in map(json.loads, (tmp_path / run / "metrics.jsonl").read_text().splitlines())
             if r["kind"] == "train"] for run in ("straight", "split")]
    assert len(rows[0]) == 8 and rows[0] == rows[1]  # every value of every step, p and r_t included
    p = [r["ada_p"] for r in rows[0]]
    assert p[0] == 0.0 and all(p[i] == p[i - 1] for i in range(1, 8) if (i + 1) % 4)  # moved every 4th step only
    assert all(0 <= v <= 1 for v in p) and all(-1 <= r["r_t"] <= 1 for r in rows[0])
    assert len(set(p)) > 1  # a fresh D is sure of the reals at once: p rose
    a, b = (checkpoint.load_checkpoint(tmp_path / run) for run in ("straight", "split"))
    assert torch.equal(a["ada"]["p"], b["ada"]["p"]) and a["ada"]["seen"] == b["ada"]["seen"]
    assert float(a["ada"]["p"]) == p[-1]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path / "straight" / "tb"))
    acc.Reload()
    assert [e.value for e in acc.Scalars("ada_p")] == pytest.approx(p)
