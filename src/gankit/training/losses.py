"""GAN losses as pure functions of discriminator outputs, by name, and the gradient penalties.

d(real, fake, label_smoothing) -> scalar the discriminator (critic) minimizes
g(fake) -> scalar the generator minimizes
score(outputs) -> what the logs call D(x) / D(G(z)): a probability for bce, the raw output otherwise
A new loss is two functions plus one registry line.

- bce: non-saturating (Goodfellow et al. 2014), D outputs logits.
- lsgan: least squares with targets real 1, fake 0 (Mao et al. 2017).
- hinge: D max(0, 1 - D(x)) + max(0, 1 + D(G(z))), G -D(G(z)) (Lim & Ye 2017; SNGAN, BigGAN).
- wgan-gp: Wasserstein critic with a gradient penalty on random interpolates (Gulrajani et al. 2017),
  5 critic steps per G step, no BatchNorm in the critic.
- R1 (Mescheder et al. 2018): gamma/2 * E||grad_x D(x)||^2 on real images, for bce or hinge.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F

from gankit.devices import Rows


def bce_d_loss(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    # D maximizes log D(x) + log(1 - D(G(z))); one-sided smoothing lowers only the real target.
    real_loss = F.binary_cross_entropy_with_logits(real, torch.full_like(real, 1.0 - label_smoothing))
    fake_loss = F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    return (real_loss + fake_loss) / 2


def bce_g_loss(fake: torch.Tensor) -> torch.Tensor:
    # Non-saturating: G maximizes log D(G(z)) instead of minimizing log(1 - D(G(z))).
    return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return ((real - 1).pow(2).mean() + fake.pow(2).mean()) / 2


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return (fake - 1).pow(2).mean() / 2


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    return F.relu(1 - real).mean() + F.relu(1 + fake).mean()


def wasserstein_d_loss(real: torch.Tensor, fake: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    # The critic maximizes D(x) - D(G(z)), an estimate of the Wasserstein-1 distance (with the penalty).
    return fake.mean() - real.mean()


def critic_g_loss(fake: torch.Tensor) -> torch.Tensor:
    # hinge and wgan-gp: G raises the critic's score of its samples.
    return -fake.mean()


def _identity(x: torch.Tensor) -> torch.Tensor:
    return x


class Loss(NamedTuple):
    d: Callable[..., torch.Tensor]
    g: Callable[[torch.Tensor], torch.Tensor]
    score: Callable[[torch.Tensor], torch.Tensor] = torch.sigmoid
    probability: bool = True  # score is a probability that D(x) near 1 / D(G(z)) near 0 can be judged by
    n_critic: int = 1  # default D steps per G step
    gradient_penalty: bool = False
    d_norm: str = "batch"  # the discriminator normalization this loss works with by default


LOSSES: dict[str, Loss] = {
    "bce": Loss(bce_d_loss, bce_g_loss),
    "lsgan": Loss(lsgan_d_loss, lsgan_g_loss, _identity, probability=False),
    "hinge": Loss(hinge_d_loss, critic_g_loss, _identity, probability=False),
    "wgan-gp": Loss(wasserstein_d_loss, critic_g_loss, _identity, probability=False, n_critic=5,
                    gradient_penalty=True, d_norm="layer"),
}


def _input_gradient(d_out: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    (grad,) = torch.autograd.grad(d_out.sum(), x, create_graph=True)
    return grad.flatten(1)


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     generator: torch.Generator | None = None, rows: Rows | None = None) -> torch.Tensor:
    """E[(||grad D(x_hat)||_2 - 1)^2] at x_hat uniformly between paired real and fake images (unweighted).

    Differentiable with respect to the critic's weights (double backward), not the generator's. rows: the
    batch is these rows of a larger one (several processes): the mixing weights are drawn for all of them.
    """
    rows = rows or Rows(real.shape[0])
    eps = rows.rand(*([1] * (real.dim() - 1)), device=real.device, generator=generator)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    grad = _input_gradient(critic(x_hat), x_hat)
    return (grad.norm(2, dim=1) - 1).pow(2).mean()


def r1_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor) -> torch.Tensor:
    """E||grad_x D(x)||^2 on real images (unweighted; the caller multiplies by gamma / 2)."""
    x = real.detach().requires_grad_(True)
    return _input_gradient(critic(x), x).pow(2).sum(1).mean()
