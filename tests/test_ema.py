"""The generator EMA: update arithmetic, warm-up, BatchNorm recalibration."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from gankit.training.ema import EMA


def test_ema_update_arithmetic_and_warmup():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(10.0)
    assert ema.current_decay() == pytest.approx(0.1)  # warm-up: (1 + 0) / (10 + 0)
    ema.accumulate()
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 9.0))  # 0.1 * 0 + 0.9 * 10
    ema.updates = 1000  # warm-up over: the configured decay
    ema.accumulate()
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 9.5))  # 0.5 * 9 + 0.5 * 10
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_recalibrates_batchnorm_for_the_averaged_weights():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, 0.9)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * 3 + 2
    ema.model[1].running_mean.fill_(123.0)  # stale statistics from elsewhere
    ema.recalibrate(lambda n: (x,), batches=3)
    expected = ema.model[0](x).mean(0)
    assert torch.allclose(ema.model[1].running_mean, expected, atol=1e-5)
    assert not ema.model.training and ema.model[1].momentum == 0.1  # back to eval mode and normal momentum
