"""Adaptive discriminator augmentation (ADA; Karras et al. 2020, "Training Generative Adversarial Networks
with Limited Data"): every image D sees, real or fake, is augmented with probability p per transform, and p
follows D's overfitting: r_t = E[sign(D(x_real))] is measured over `interval` D steps, and p moves by
batch * interval / (speed_kimg * 1000) toward more augmentation when r_t is above the target (0.6 in the
paper), toward less when below; p starts at 0 and stays in [0, 1].

The transforms are differentiable (G's gradient flows through them, as DiffAugment's) and as the paper's
"bgc" pipeline has them, without its anti-aliasing filters: horizontal flip, 90-degree rotations, integer
translation by up to 1/8 of the image (blit); isotropic scaling (lognormal, std 0.2 ln 2) and rotation
(uniform, full circle) (geometric) — all composed into one affine map sampled once with reflection at the
border; brightness (+N(0, 0.2)), contrast (x lognormal(0, 0.5 ln 2)), saturation (x lognormal(0, ln 2), RGB
only) (color). Each transform is drawn per image, from the run's generator (its state is in the checkpoint).

p and its running sum are kept on the device: adjusting it never waits for the device. Written here: no
library in the dependencies implements ADA's feedback loop (kornia has the transforms, not p).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from gankit.devices import Rows
from gankit.errors import GankitError

ADA_SCALARS = ("r_t", "ada_p")  # logged each step beside the losses: E[sign(D(x_real))] and the probability


class ADA:
    """The augmentation the D step applies to real and fake alike (`ada(x)`), and its probability's feedback
    (`observe(r)` once per D step with that step's mean sign of D on the reals, over all processes)."""

    def __init__(self, target: float, speed_kimg: float, batch_size: int, device: torch.device,
                 generator: torch.Generator | None = None, rows: Rows | None = None, interval: int = 4):
        self.target, self.interval, self.generator, self.rows = target, interval, generator, rows
        self.adjust = batch_size * interval / (speed_kimg * 1000)
        self.p = torch.zeros((), device=device)
        self.signs = torch.zeros((), device=device)  # sum of r over the D steps since the last adjustment
        self.seen = 0

    # ------------------------------------------------------------------ the feedback
    def observe(self, r: torch.Tensor) -> None:
        """One D step's E[sign(D(x_real))]; every `interval` steps p moves toward the target."""
        self.signs += r.detach().to(self.signs)
        self.seen += 1
        if self.seen == self.interval:
            r_t = self.signs / self.interval
            self.p.copy_((self.p + torch.sign(r_t - self.target) * self.adjust).clamp_(0.0, 1.0))
            self.signs.zero_()
            self.seen = 0

    def state_dict(self) -> dict:
        return {"p": self.p.detach().cpu().clone(), "signs": self.signs.detach().cpu().clone(), "seen": self.seen}

    def check(self, state) -> None:
        """A checkpoint's ADA state, checked before anything is restored: GankitError naming what is wrong."""
        def scalar(key: str) -> bool:
            value = state.get(key)
            return (isinstance(value, torch.Tensor) and value.dim() == 0 and value.is_floating_point()
                    and bool(torch.isfinite(value)))

        if not isinstance(state, dict) or not (scalar("p") and scalar("signs")):
            raise GankitError("this run adapts its augmentation (ada=true) and the checkpoint holds no ADA state")
        seen = state.get("seen")
        if not 0 <= float(state["p"]) <= 1 or type(seen) is not int or not 0 <= seen < self.interval:
            raise GankitError(f"its ADA state is out of range (p {float(state['p'])}, seen {seen!r})")

    def load_state_dict(self, state: dict) -> None:
        self.check(state)
        self.p.copy_(state["p"])
        self.signs.copy_(state["signs"])
        self.seen = int(state["seen"])

    # ------------------------------------------------------------------ the augmentation
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        rows = self.rows or Rows(x.shape[0])
        x = _geometric(x, self.p, self.generator, rows)
        return _color(x, self.p, self.generator, rows)

    def __repr__(self) -> str:
        return f"ADA(target={self.target}, p={float(self.p):.3f})"


def _draw(p: torch.Tensor, x: torch.Tensor, generator, rows: Rows) -> torch.Tensor:
    """Per image: 1.0 with probability p (this transform is applied), else 0.0."""
    return (rows.rand(device=x.device, generator=generator) < p).to(x.dtype)


def _geometric(x: torch.Tensor, p: torch.Tensor, generator, rows: Rows) -> torch.Tensor:
    """Flip, 90-degree rotation, integer translation, scaling and rotation as one inverse affine map per image
    (in grid_sample's [-1, 1] coordinates), sampled with reflection at the border."""
    n, _, h, w = x.shape
    dev, dt = x.device, x.dtype

    def u(*shape):
        return rows.rand(*shape, device=dev, generator=generator).to(dt)

    flip = 1 - 2 * _draw(p, x, generator, rows) * (u() < 0.5).to(dt)  # -1: mirrored
    quarter = torch.floor(u() * 4) * _draw(p, x, generator, rows) * (math.pi / 2)
    shift = (u(2) * 2 - 1) * 0.125 * _draw(p, x, generator, rows).unsqueeze(1)
    shift = torch.round(shift * torch.tensor([w, h], device=dev, dtype=dt)) * 2 / torch.tensor([w, h], device=dev,
                                                                                              dtype=dt)
    scale = torch.exp2(rows.randn(device=dev, generator=generator).to(dt) * 0.2 * _draw(p, x, generator, rows))
    angle = quarter + (u() * 2 - 1) * math.pi * _draw(p, x, generator, rows)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    # output pixel -> input pixel: undo the translation, rotation and scale; the flip mirrors the input's x
    theta = torch.stack([torch.stack([cos * flip, -sin * flip, -shift[:, 0] * flip], 1),
                         torch.stack([sin, cos, -shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)


def _color(x: torch.Tensor, p: torch.Tensor, generator, rows: Rows) -> torch.Tensor:
    dev, dt = x.device, x.dtype
    shape = (x.shape[0], 1, 1, 1)

    def normal(std: float) -> torch.Tensor:
        return (rows.randn(device=dev, generator=generator).to(dt) * std * _draw(p, x, generator, rows)).view(shape)

    x = x + normal(0.2)
    mean = x.mean((1, 2, 3), keepdim=True)
    x = (x - mean) * torch.exp2(normal(0.5)) + mean
    if x.shape[1] > 1:
        gray = x.mean(1, keepdim=True)
        x = (x - gray) * torch.exp2(normal(1.0)) + gray
    return x
