import math

import pytest
import torch
from torch import nn

from gankit.training.losses import LOSSES, bce_d_loss, bce_g_loss, gradient_penalty, r1_penalty


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


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_pushes_d_and_g_the_right_way(name):
    loss = LOSSES[name]
    real = torch.full((4,), 0.5, requires_grad=True)
    fake = torch.full((4,), 0.5, requires_grad=True)
    loss.d(real, fake).backward()
    assert (real.grad < 0).all(), "descending D's loss must raise D on real images"
    assert (fake.grad > 0).all(), "descending D's loss must lower D on fake images"
    fake_g = torch.full((4,), 0.5, requires_grad=True)
    loss.g(fake_g).backward()
    assert (fake_g.grad < 0).all(), "descending G's loss must raise D on fake images"


def test_loss_values_on_hand_made_outputs():
    one, minus = torch.ones(3), -torch.ones(3)
    assert LOSSES["lsgan"].d(one, torch.zeros(3)).item() == 0  # perfect least-squares discriminator
    assert LOSSES["lsgan"].g(torch.zeros(3)).item() == pytest.approx(0.5)
    assert LOSSES["hinge"].d(one, minus).item() == 0  # both margins met
    assert LOSSES["hinge"].d(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2.0)
    assert LOSSES["wgan-gp"].d(torch.full((3,), 2.0), one).item() == pytest.approx(-1.0)  # -(E D(x) - E D(G(z)))
    assert LOSSES["hinge"].g(torch.full((3,), 2.0)).item() == pytest.approx(-2.0)
    assert LOSSES["wgan-gp"].n_critic == 5 and LOSSES["wgan-gp"].d_norm == "layer"


def _linear_critic(scale: float) -> nn.Module:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        w = torch.randn(1, 12, generator=torch.Generator().manual_seed(0))
        critic[1].weight.copy_(w / w.norm() * scale)  # gradient norm = scale everywhere
    return critic


def test_gradient_penalty_zero_for_1_lipschitz_positive_for_steep():
    real, fake = torch.randn(16, 3, 2, 2), torch.randn(16, 3, 2, 2)
    assert gradient_penalty(_linear_critic(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    steep = _linear_critic(5.0)
    gp = gradient_penalty(steep, real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-5)  # (5 - 1)^2
    gp.backward()  # double backward reaches the critic's weights
    assert steep[1].weight.grad.abs().sum() > 0
    assert r1_penalty(_linear_critic(3.0), real).item() == pytest.approx(9.0, rel=1e-5)  # ||grad||^2


def test_gradient_penalty_is_taken_between_reals_and_fakes():
    # critic(x) = ||x||^2 / 4 has gradient x / 2, of norm ||x|| / 2 (4 pixels: ||x|| = 2 * |value|):
    # 1 at the reals (all +1), so no penalty there; 0 at the fakes (all 0), a penalty of 1 there; and at
    # eps * real + (1 - eps) * fake a penalty of (eps - 1)^2, on average 1/3 for eps ~ U(0, 1)
    def critic(x):
        return x.pow(2).flatten(1).sum(1) / 4

    real, fake = torch.ones(20000, 1, 2, 2), torch.zeros(20000, 1, 2, 2)
    for seed in (0, 1):
        gp = gradient_penalty(critic, real, fake, torch.Generator().manual_seed(seed)).item()
        assert gp == pytest.approx(1 / 3, abs=0.02), "not at uniform random points between real and fake"
    again = gradient_penalty(critic, real[:64], fake[:64], torch.Generator().manual_seed(3))
    assert again.item() == gradient_penalty(critic, real[:64], fake[:64], torch.Generator().manual_seed(3)).item()
    # per image: a real paired with itself (fake = real) is penalized at the real (0 here)
    assert gradient_penalty(critic, real[:64], real[:64]).item() == pytest.approx(0.0, abs=1e-10)
