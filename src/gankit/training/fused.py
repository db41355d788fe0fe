"""One training step of the simple-GAN (mlp model, bce loss) with a hand-written forward and backward.

Why hand-written: the tutorial's MLP pair is tiny (14 matmuls of 32-64 rows per step), and on a laptop CPU
autograd's graph building, per-op dispatch and the optimizer's Python overhead cost as much as the matmuls
themselves (profile in BENCHMARKS.md). Writing the two backward passes out (four Linear layers, LeakyReLU,
Tanh, BCE-with-logits) takes one step from ~5 ms to ~2 ms on a 2-core EPYC. The math is exactly the autograd loop's:
D on [real; fake] in one call, the fake batch reused for the G step through the updated D, D's weights not
updated by the G step, one-sided label smoothing; gradients are handed to the run's optimizers
(gankit.training.adam), so checkpoints, resume and EMA are unchanged. `tests/test_fused.py` checks it against autograd.

The same call as `gankit.training.steps.AutogradStep`. Used when the run is mlp + bce with nothing else that changes
the step (no penalty, DiffAugment, n_critic, conditioning, spectral norm, compile, autocast): `gankit.config.plan`
decides; `--set fused=false` turns it off.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gankit.training.adam import Adam

SLOPE = 0.1  # the tutorial's LeakyReLU(0.1), in G and in D


def _leaky_grad(pre: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """LeakyReLU's backward: grad where pre > 0, SLOPE * grad elsewhere (one aten kernel)."""
    return torch.ops.aten.leaky_relu_backward(grad, pre, SLOPE, False)


class FusedMLPStep:
    """Holds references to the modules' parameters and optimizers; step(real, z) does the D and G updates."""

    def __init__(self, G: torch.nn.Module, D: torch.nn.Module, opt_g: Adam, opt_d: Adam,
                 label_smoothing: float = 0.0):
        g1, g2 = G.net[0], G.net[2]
        d1, d2 = D.body[1], D.head
        self.g_params = [g1.weight, g1.bias, g2.weight, g2.bias]
        self.d_params = [d1.weight, d1.bias, d2.weight, d2.bias]
        self.opt_g, self.opt_d, self.smoothing = opt_g, opt_d, label_smoothing
        self._target = torch.empty(0)
        self.loss_g = torch.zeros((), device=g1.weight.device)  # the last G loss (see gankit.training.steps)

    def _targets(self, B: int, device: torch.device) -> torch.Tensor:
        """D's targets for [real; fake]: 1 - smoothing, then 0 (made once per batch size)."""
        if self._target.shape != (2 * B,) or self._target.device != device:
            self._target = torch.cat([torch.full((B,), 1.0 - self.smoothing, device=device),
                                      torch.zeros(B, device=device)])
        return self._target

    def _apply(self, params: list[torch.Tensor], grads: list[torch.Tensor], opt) -> None:
        """Adam on these gradients, in the optimizer's own state: gankit.training.adam's update takes them as they are
        (opt.step() through .grad costs more Python than the kernel here); torch.optim's through .grad."""
        if isinstance(opt, Adam):
            opt.update(params, grads)
            return
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        for p in params:
            p.grad = None

    def __call__(self, real: torch.Tensor, y: None, z: torch.Tensor, g_step: bool = True,
                 r1: bool = False) -> tuple[torch.Tensor, ...]:
        """(loss_D, loss_G, D(x), D(G(z))) as 0-d tensors; real is B x C x H x W in [-1, 1]. Every step updates
        both networks, unconditionally, without penalties: what gankit.config.plan makes sure of."""
        if y is not None or not g_step or r1:
            raise ValueError("the fused mlp step is unconditional, one D step per G step, without R1")
        scalars = self._step(real, z)
        self.loss_g = scalars[1]
        return scalars

    @torch.no_grad()
    def _step(self, real: torch.Tensor, z: torch.Tensor) -> tuple[torch.Tensor, ...]:
        W1, b1, W2, b2 = self.g_params
        V1, c1, v2, c2 = self.d_params
        B = real.shape[0]
        # G forward
        h1 = torch.addmm(b1, z, W1.t())
        a1 = F.leaky_relu(h1, SLOPE)
        fake = torch.tanh(torch.addmm(b2, a1, W2.t()))
        # D step on [real; fake]: loss = (BCE(s_real, 1 - smoothing) + BCE(s_fake, 0)) / 2
        X = torch.cat([real.reshape(B, -1), fake])
        u = torch.addmm(c1, X, V1.t())
        a = F.leaky_relu(u, SLOPE)
        s = torch.addmm(c2, a, v2.t()).view(-1)
        target = self._targets(B, s.device)
        loss_d = F.binary_cross_entropy_with_logits(s, target)  # the mean over 2B = the mean of the two means
        prob = torch.sigmoid(s)
        ds = (prob - target) / (2 * B)
        du = _leaky_grad(u, ds.unsqueeze(1) * v2)
        self._apply(self.d_params, [du.t() @ X, du.sum(0), ds.unsqueeze(0) @ a, ds.sum().view(1)], self.opt_d)
        # G step through the updated D: loss = BCE(D(fake), 1); only G's weights move
        u2 = torch.addmm(c1, fake, V1.t())
        a2 = F.leaky_relu(u2, SLOPE)
        s2 = torch.addmm(c2, a2, v2.t()).view(-1)
        loss_g = F.binary_cross_entropy_with_logits(s2, torch.ones_like(s2))
        ds2 = (torch.sigmoid(s2) - 1) / B
        dh2 = torch.ops.aten.tanh_backward(_leaky_grad(u2, ds2.unsqueeze(1) * v2) @ V1, fake)
        dh1 = _leaky_grad(h1, dh2 @ W2)
        self._apply(self.g_params, [dh1.t() @ z, dh1.sum(0), dh2.t() @ a1, dh2.sum(0)], self.opt_g)
        return loss_d, loss_g, prob[:B].mean(), prob[B:].mean()
