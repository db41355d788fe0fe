"""One training step: a batch, its labels and a noise batch in; both networks updated; four scalars out.

Two implementations of the same call, `step(real, labels, noise, g_step, r1) -> (loss_D, loss_G, D(x), D(G(z)))`
(0-d tensors, left on the device): `AutogradStep` for every model and loss, and `gankit.training.fused.FusedMLPStep`,
the simple-GAN's step written out by hand. `g_step`: also update G this step (n_critic D steps per G step);
`r1`: add the lazy R1 penalty this step. loss_G is the last G step's loss, carried over D-only steps; it is
state (`loss_g`) that the checkpoint keeps.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Protocol

import torch
from torch import nn

from gankit.devices import Rows
from gankit.models.registry import run
from gankit.training.adam import Adam
from gankit.training.losses import Loss, gradient_penalty, r1_penalty

Scalars = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


class Step(Protocol):
    loss_g: torch.Tensor

    def __call__(self, real: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor, g_step: bool,
                 r1: bool) -> Scalars: ...


def has_batchnorm(module: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in module.modules())


class AutogradStep:
    """The D and G updates through autograd, for any registered model and loss.

    G, D: the networks (penalties take their double backward through D itself); g_run, d_run: what the
    forward passes call (the compiled networks under torch.compile, else G and D). augment: DiffAugment, the
    same kind of draw for real and fake (identity when off). d_for_g: what the G step runs D through
    (d_run, unless there are several processes: then D itself, since DDP's wrapper expects D's gradients).
    """

    def __init__(self, G: nn.Module, D: nn.Module, opt_g: Adam, opt_d: Adam,
                 loss: Loss, augment: Callable[[torch.Tensor], torch.Tensor], rng: torch.Generator, *,
                 label_smoothing: float = 0.0, gp_lambda: float = 0.0, r1_weight: float = 0.0,
                 autocast: bool = False, g_run: nn.Module | None = None, d_run: nn.Module | None = None,
                 d_for_g: nn.Module | None = None, rows: Rows | None = None):
        self.G, self.D, self.opt_g, self.opt_d, self.loss = G, D, opt_g, opt_d, loss
        # (`is None`, not `or`: truth-testing a compiled module calls len() on it, which raises)
        self.g_run = G if g_run is None else g_run
        self.d_run = D if d_run is None else d_run
        self.d_for_g = self.d_run if d_for_g is None else d_for_g  # D in the G step (not DDP's wrapper: D's
        # gradients are not wanted)
        self.rows = rows  # this rank's rows of the global batch (several processes), for the penalty's draws
        self.augment, self.rng = augment, rng
        self.smoothing, self.gp_lambda, self.r1_weight = label_smoothing, gp_lambda, r1_weight
        self.autocast = autocast
        # Without BatchNorm, D on [real; fake] in one call is the same function as two calls, and cheaper.
        self.joint_d = not has_batchnorm(D)
        self.loss_g = torch.zeros((), device=next(G.parameters()).device)

    def _autocast(self):
        if not self.autocast:
            return contextlib.nullcontext()
        return torch.autocast(self.loss_g.device.type, dtype=torch.bfloat16)  # CUDA, or a CPU with native bf16

    def _d_logits(self, real: torch.Tensor, fake: torch.Tensor, y: torch.Tensor | None):
        if not self.joint_d:
            return run(self.d_run, real, y), run(self.d_run, fake, y)
        both = None if y is None else torch.cat([y, y])
        return run(self.d_run, torch.cat([real, fake]), both).split(real.shape[0])

    def __call__(self, real: torch.Tensor, y: torch.Tensor | None, z: torch.Tensor, g_step: bool,
                 r1: bool) -> Scalars:
        D, loss = self.D, self.loss
        with self._autocast():
            # fakes are drawn for the batch's own labels, so they follow the data's class mix
            with contextlib.nullcontext() if g_step else torch.no_grad():
                fake = run(self.g_run, z, y)
            # (1) update D: minimize loss.d(D(x), D(G(z))), e.g. bce: -[log D(x) + log(1 - D(G(z)))] / 2
            real_in, fake_in = self.augment(real), self.augment(fake.detach())
            real_logits, fake_logits = self._d_logits(real_in, fake_in, y)
            loss_d = loss.d(real_logits, fake_logits, self.smoothing)
        self.real_sign = torch.sign(real_logits.detach().float()).mean()  # ADA's overfitting measure r_t
        # penalties: in fp32 (outside autocast) and through the uncompiled D (they need a double backward)
        if loss.gradient_penalty:  # + lambda * E[(||grad D(x_hat)||_2 - 1)^2], x_hat between real and fake
            loss_d = loss_d + self.gp_lambda * gradient_penalty(lambda x: run(D, x, y), real_in.float(),
                                                                fake_in.float(), self.rng, self.rows)
        if r1:  # + gamma/2 * E||grad_x D(x)||^2 on the reals (lazy: scaled by its interval)
            loss_d = loss_d + self.r1_weight * r1_penalty(lambda x: run(D, x, y), real_in.float())
        self.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.opt_d.step()

        if g_step:
            # (2) update G: minimize loss.g(D(G(z))) on the same fake batch, e.g. bce: -log D(G(z));
            # D's weights need no gradient
            D.requires_grad_(False)
            with self._autocast():
                loss_g = loss.g(run(self.d_for_g, self.augment(fake), y))
            self.opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            self.opt_g.step()
            D.requires_grad_(True)
            self.loss_g = loss_g.detach()
        return (loss_d.detach(), self.loss_g, loss.score(real_logits.detach().float()).mean(),
                loss.score(fake_logits.detach().float()).mean())
