"""Differentiable augmentation (DiffAugment, Zhao et al. 2020): the same random transforms applied to real
and fake images before the discriminator, differentiable so that G's gradient flows through them.

Policies (comma-separated, applied in this order):
- color: brightness (+U(-0.5, 0.5)), saturation (x U(0, 2) around the pixel's channel mean; RGB only),
  contrast (x U(0.5, 1.5) around the image mean)
- translation: shift by up to 1/8 of the image size in each direction; the uncovered border is filled by
  reflection, as in ADA (Karras et al. 2020). DiffAugment's zero padding is mid-gray in [-1, 1] images,
  a band no digit on a black (-1) background has (mnist5k, 20 epochs: FD 103 with zeros, 75 reflected)
- cutout: zero a square of half the image size at a random position

All draws are per image and come from the given torch.Generator (the checkpoint carries its state).
Written here rather than taken from a library: torchvision's v2 transforms draw one set of parameters per
batch, not per image, and kornia is a large dependency for three short functions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from gankit.devices import Rows
from gankit.errors import GankitError

POLICIES = ("color", "translation", "cutout")


def parse_policy(text: str) -> tuple[str, ...]:
    names = tuple(p.strip() for p in text.split(",") if p.strip())
    bad = [p for p in names if p not in POLICIES]
    if bad:
        raise GankitError(f"unknown diffaug policy '{bad[0]}' (choose from: {', '.join(POLICIES)}, "
                          "comma-separated, e.g. diffaug=translation,cutout)")
    return tuple(p for p in POLICIES if p in names)


def _uniform(x: torch.Tensor, lo: float, hi: float, generator: torch.Generator | None, rows: Rows) -> torch.Tensor:
    return rows.rand(1, 1, 1, device=x.device, generator=generator, dtype=x.dtype) * (hi - lo) + lo


def color(x: torch.Tensor, generator: torch.Generator | None = None, rows: Rows | None = None) -> torch.Tensor:
    rows = rows or Rows(x.shape[0])
    x = x + _uniform(x, -0.5, 0.5, generator, rows)
    if x.shape[1] > 1:
        mean = x.mean(1, keepdim=True)
        x = (x - mean) * _uniform(x, 0.0, 2.0, generator, rows) + mean
    mean = x.mean((1, 2, 3), keepdim=True)
    return (x - mean) * _uniform(x, 0.5, 1.5, generator, rows) + mean


def translation(x: torch.Tensor, generator: torch.Generator | None = None, rows: Rows | None = None,
                ratio: float = 0.125) -> torch.Tensor:
    n, _, h, w = x.shape
    rows = rows or Rows(n)
    sy, sx = int(h * ratio + 0.5), int(w * ratio + 0.5)
    ty = rows.randint(-sy, sy + 1, 1, device=x.device, generator=generator)
    tx = rows.randint(-sx, sx + 1, 1, device=x.device, generator=generator)
    padded = F.pad(x, [sx, sx, sy, sy], mode="reflect")
    rows = torch.arange(h, device=x.device).unsqueeze(0) + sy - ty  # N x H: source row of each output row
    cols = torch.arange(w, device=x.device).unsqueeze(0) + sx - tx  # N x W
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # advanced indexing around the channel slice puts the indexed dims first: N x H x W x C
    return padded[batch, :, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2)


def cutout(x: torch.Tensor, generator: torch.Generator | None = None, rows: Rows | None = None,
           ratio: float = 0.5) -> torch.Tensor:
    n, _, h, w = x.shape
    rows = rows or Rows(n)
    ch, cw = int(h * ratio + 0.5), int(w * ratio + 0.5)
    # the square's centre is anywhere in the image, so near the edges part of it falls outside
    top = rows.randint(0, h, 1, 1, device=x.device, generator=generator) - ch // 2
    left = rows.randint(0, w, 1, 1, device=x.device, generator=generator) - cw // 2
    ys = torch.arange(h, device=x.device).view(1, h, 1)
    xs = torch.arange(w, device=x.device).view(1, 1, w)
    inside = (ys >= top) & (ys < top + ch) & (xs >= left) & (xs < left + cw)
    return x * (~inside).unsqueeze(1).to(x.dtype)


FUNCTIONS = {"color": color, "translation": translation, "cutout": cutout}


def diff_augment(x: torch.Tensor, policy: tuple[str, ...], generator: torch.Generator | None = None,
                 rows: Rows | None = None) -> torch.Tensor:
    """The policy's augmentations in order; rows: x is these rows of a larger batch (several processes)."""
    for name in policy:
        x = FUNCTIONS[name](x, generator, rows)
    return x


class DiffAugment:
    """The augmentation the D step applies to real and fake batches alike: `augment(x)` runs the policy's
    transforms in order, with draws from the run's generator (their state is in the checkpoint), for these
    rows of the global batch. An empty policy returns x itself."""

    def __init__(self, policy: tuple[str, ...], generator: torch.Generator | None = None, rows: Rows | None = None):
        self.policy, self.generator, self.rows = policy, generator, rows

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy, self.generator, self.rows) if self.policy else x

    def __repr__(self) -> str:
        return f"DiffAugment({','.join(self.policy) or 'none'})"


class Chain:
    """Augmentations applied one after the other (DiffAugment, then ADA)."""

    def __init__(self, *steps):
        self.steps = steps

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for step in self.steps:
            x = step(x)
        return x
