"""One step interface: the autograd step and the hand-written mlp step take the same call and agree."""

from __future__ import annotations

import copy

import pytest
import torch

from gankit.models.registry import build
from gankit.training.fused import FusedMLPStep
from gankit.training.losses import LOSSES
from gankit.training.steps import AutogradStep


def _pair(seed=0):
    torch.manual_seed(seed)
    G, D = build("mlp", 64, 1, 28)
    opts = [torch.optim.Adam(m.parameters(), lr=3e-4, fused=True) for m in (G, D)]
    return G, D, opts


def _autograd(G, D, opt_g, opt_d, loss="bce", **kw):
    return AutogradStep(G, D, opt_g, opt_d, LOSSES[loss], lambda x: x, torch.Generator().manual_seed(0), **kw)


def test_both_steps_take_the_same_call_and_agree():
    G1, D1, (og1, od1) = _pair()
    G2, D2 = copy.deepcopy(G1), copy.deepcopy(D1)
    og2 = torch.optim.Adam(G2.parameters(), lr=3e-4, fused=True)
    od2 = torch.optim.Adam(D2.parameters(), lr=3e-4, fused=True)
    steps = [FusedMLPStep(G1, D1, og1, od1, label_smoothing=0.1),
             _autograd(G2, D2, og2, od2, label_smoothing=0.1)]
    gen = torch.Generator().manual_seed(1)
    for _ in range(3):
        real = torch.rand(16, 1, 28, 28, generator=gen) * 2 - 1
        z = torch.randn(16, 64, generator=gen)
        a, b = (step(real, None, z, True, False) for step in steps)
        assert all(x.dim() == 0 for x in a + b)
        for x, y in zip(a, b):
            assert x.item() == pytest.approx(y.item(), rel=1e-4, abs=1e-6)
        assert steps[0].loss_g.item() == pytest.approx(steps[1].loss_g.item(), rel=1e-4)
    for p, q in zip(list(G1.parameters()) + list(D1.parameters()), list(G2.parameters()) + list(D2.parameters())):
        assert torch.allclose(p, q, atol=1e-5)


def test_the_fused_step_refuses_what_it_does_not_do():
    G, D, (og, od) = _pair()
    step = FusedMLPStep(G, D, og, od)
    real, z = torch.zeros(4, 1, 28, 28), torch.randn(4, 64)
    for call in ((real, torch.zeros(4, dtype=torch.long), z, True, False), (real, None, z, False, False),
                 (real, None, z, True, True)):
        with pytest.raises(ValueError, match="unconditional, one D step per G step"):
            step(*call)


def test_a_d_only_step_leaves_g_and_carries_the_last_g_loss():
    G, D, (og, od) = _pair()
    step = _autograd(G, D, og, od)
    real, z = torch.rand(8, 1, 28, 28) * 2 - 1, torch.randn(8, 64)
    _, loss_g, _, _ = step(real, None, z, True, False)
    g_before = [p.clone() for p in G.parameters()]
    d_before = [p.clone() for p in D.parameters()]
    loss_d, carried, _, _ = step(real, None, z, False, False)
    assert carried is step.loss_g and carried.item() == loss_g.item()
    assert all(torch.equal(p, q) for p, q in zip(G.parameters(), g_before))
    assert not all(torch.equal(p, q) for p, q in zip(D.parameters(), d_before))
    assert torch.isfinite(loss_d)


def test_r1_changes_the_d_step_only_when_asked():
    results = {}
    for r1 in (False, True):
        G, D, (og, od) = _pair()
        step = _autograd(G, D, og, od, r1_weight=50.0)
        real = torch.rand(8, 1, 28, 28, generator=torch.Generator().manual_seed(2)) * 2 - 1
        results[r1] = step(real, None, torch.randn(8, 64, generator=torch.Generator().manual_seed(3)), True, r1)[0]
    assert results[True].item() > results[False].item()  # the penalty is added to loss_D


class _Wrapped(torch.nn.Module):
    """Stands for torch.compile's module: it runs the inner one and cannot be truth-tested (len() raises)."""

    def __init__(self, inner):
        super().__init__()
        self.inner, self.calls = inner, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        return self.inner(*args, **kwargs)

    def __len__(self):
        raise TypeError(f"{type(self.inner).__name__} does not support len()")


def test_the_step_runs_through_wrapped_networks_such_as_compiled_ones():
    G, D, (opt_g, opt_d) = _pair()
    g_run, d_run = _Wrapped(G), _Wrapped(D)
    step = _autograd(G, D, opt_g, opt_d, g_run=g_run, d_run=d_run, d_for_g=None)
    gen = torch.Generator().manual_seed(1)
    out = step(torch.rand(8, 1, 28, 28, generator=gen) * 2 - 1, None, torch.randn(8, 64, generator=gen), True, False)
    assert all(torch.isfinite(x) for x in out)
    assert g_run.calls == 1 and d_run.calls >= 2  # G once (its fake reused), D for the D and the G step
