"""GAN losses as pure functions of discriminator logits, by name.

d_loss(real_logits, fake_logits, label_smoothing) -> scalar the discriminator minimizes
g_loss(fake_logits) -> scalar the generator minimizes
A new loss is two functions plus one registry line.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


def bce_d_loss(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    # D maximizes log D(x) + log(1 - D(G(z))); one-sided smoothing lowers only the real target.
    real_loss = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1.0 - label_smoothing))
    fake_loss = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    return (real_loss + fake_loss) / 2


def bce_g_loss(fake: torch.Tensor) -> torch.Tensor:
    # Non-saturating: G maximizes log D(G(z)) instead of minimizing log(1 - D(G(z))).
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


class Loss(NamedTuple):
    d: Callable[..., torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]


LOSSES: dict[str, Loss] = {"bce": Loss(bce_d_loss, bce_g_loss)}
