import math

import torch

from gankit.losses import LOSSES, bce_d_loss, bce_g_loss


def test_bce_values_on_hand_made_logits():
    zero = torch.zeros(4)
    # D(x) = D(G(z)) = 0.5: each BCE term is log 2
    assert bce_d_loss(zero, zero).item() == pytest_approx(math.log(2))
    assert bce_g_loss(zero).item() == pytest_approx(math.log(2))
    # a confident, correct discriminator has a small loss and the generator a large one
    assert bce_d_loss(torch.full((4,), 8.0), torch.full((4,), -8.0)).item() < 1e-3
    assert bce_g_loss(torch.full((4,), -8.0)).item() > 7.9


def test_label_smoothing_targets_real_only():
    real, fake = torch.full((4,), 10.0), torch.full((4,), -10.0)
    smoothed = bce_d_loss(real, fake, label_smoothing=0.1).item()
    # real term with target 0.9 at logit 10: 0.1 * 10 + log(1 + e^-10) ~ 1.0; fake term ~ 0
    assert smoothed == pytest_approx(1.0 / 2, rel=1e-3)


def test_gradient_signs():
    real = torch.zeros(3, requires_grad=True)
    fake = torch.zeros(3, requires_grad=True)
    bce_d_loss(real, fake).backward()
    assert (real.grad < 0).all() and (fake.grad > 0).all()  # descent raises D on real, lowers it on fake
    fake_g = torch.zeros(3, requires_grad=True)
    bce_g_loss(fake_g).backward()
    assert (fake_g.grad < 0).all()  # G pushes D(G(z)) up
    assert set(LOSSES) >= {"bce"}


def pytest_approx(value, rel=1e-6):
    import pytest

    return pytest.approx(value, rel=rel)
