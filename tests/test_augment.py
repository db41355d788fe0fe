"""DiffAugment: shapes, gradients to G, what each transform does."""

from __future__ import annotations

import torch

from gankit.models.registry import build
from gankit.training.augment import POLICIES, cutout, diff_augment, parse_policy, translation


def test_diffaugment_keeps_shapes_and_lets_gradients_reach_g():
    G, _ = build("dcgan", 8, 1, 28)
    fake = G(torch.randn(6, 8))
    out = diff_augment(fake, parse_policy("color,translation,cutout"), torch.Generator().manual_seed(0))
    assert out.shape == fake.shape
    out.square().mean().backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert parse_policy("cutout, translation") == ("translation", "cutout")  # fixed order, spaces allowed
    assert set(POLICIES) == {"color", "translation", "cutout"}


def test_translation_moves_content_and_cutout_blanks_a_square():
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0  # a centred square that no shift of <= 2 pixels pushes out
    moved = translation(x, torch.Generator().manual_seed(0))
    assert torch.allclose(moved.sum((1, 2, 3)), x.sum((1, 2, 3)))  # content kept
    assert (moved != x).any(dim=(1, 2, 3)).sum() > 16  # most images moved
    digit = torch.full((32, 1, 16, 16), -1.0)
    digit[:, :, 6:10, 6:10] = 1.0
    shifted = translation(digit, torch.Generator().manual_seed(0))
    assert set(shifted.unique().tolist()) == {-1.0, 1.0}  # the border is background, not a gray band
    assert torch.equal((shifted == 1).sum((1, 2, 3)), (digit == 1).sum((1, 2, 3)))
    blanked = cutout(torch.ones(32, 1, 16, 16), torch.Generator().manual_seed(0))
    zeros = (blanked == 0).float().mean((1, 2, 3))
    assert (zeros <= 0.25 + 1e-6).all() and (zeros == 0.25).any() and (zeros > 0).all()
    again = cutout(torch.ones(32, 1, 16, 16), torch.Generator().manual_seed(0))
    assert torch.equal(blanked, again)  # seeded: a resumed run draws the same
