"""uint8 images -> the batches training sees: float in [-1, 1], this rank's rows, augmented on the whole batch.

The training loop gathers a batch by index from the global permutation of the epoch, converts it to float in
[-1, 1] and augments the whole batch at once (random rotation, horizontal flip): no DataLoader workers and no
per-sample PIL work. In-memory data lives on the training device; mapped data is gathered on the host (into
pinned memory when the device is a GPU) and copied without blocking. DiffAugment, applied to real and fake
batches alike before D, is gankit.training.augment.
"""

from __future__ import annotations

import math
from typing import Iterator

import torch
import torch.nn.functional as F

from gankit.devices import Rows
from gankit.errors import GankitError


def to_float(batch: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] (the range of the generator's Tanh)."""
    return batch.float().mul_(2.0 / 255.0).sub_(1.0)


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """float [-1, 1] -> uint8 [0, 255]."""
    return images.detach().float().add(1.0).mul(127.5).round_().clamp_(0, 255).to(torch.uint8)


def augment(x: torch.Tensor, rotation: float, hflip: bool, generator: torch.Generator | None,
            rows: Rows | None = None) -> torch.Tensor:
    """Random rotation by up to `rotation` degrees and random horizontal flip, for the whole batch at once.

    Areas rotated in from outside the image are filled with -1 (black), as torchvision's RandomRotation does.
    rows: x is these rows of a larger batch (several processes): draws are made for all of them and sliced.
    """
    n = x.shape[0]
    rows = rows or Rows(n)
    if rotation > 0:
        angle = (rows.rand(device=x.device, generator=generator) * 2 - 1) * math.radians(rotation)
        cos, sin, zero = angle.cos(), angle.sin(), torch.zeros_like(angle)
        theta = torch.stack([torch.stack([cos, -sin, zero], 1), torch.stack([sin, cos, zero], 1)], 1)
        grid = F.affine_grid(theta.to(x.dtype), list(x.shape), align_corners=False)
        # sample x + 1 with zero padding so that the fill is -1 after shifting back
        x = F.grid_sample(x + 1, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1
    if hflip:
        flip = rows.rand(device=x.device, generator=generator) < 0.5
        x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    return x


class Batches:
    """Shuffled, augmented float batches from a uint8 dataset: in memory on the training device, or mapped.

    The order of epoch e depends only on (seed, e), so a resumed run sees exactly the batches it would have
    seen; augmentation draws from `generator`, whose state the checkpoint carries. The last incomplete batch
    is dropped (BatchNorm statistics of a handful of images are noise). Images on another device than
    `device` (a pack mapped in host memory) are gathered there, pinned when the device is a GPU, and copied
    without blocking.
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, rotation: float = 0.0,
                 hflip: bool = False, generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, labels: torch.Tensor | None = None,
                 rows: Rows | None = None, device: torch.device | None = None, keep: torch.Tensor | None = None):
        """batch_size: the global batch; rows: this process's rows of it (several processes), else all;
        device: where batches go (default: where the images are); labels live there; keep: the indices of the
        images to train on (the others are held out), default all."""
        self.keep = keep
        count = images.shape[0] if keep is None else len(keep)
        if count < batch_size:
            raise GankitError(f"the data holds {count} images to train on, fewer than one batch of {batch_size}: "
                              "lower batch_size or add images")
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.rotation, self.hflip, self.generator = rotation, hflip, generator
        self.memory_format, self.labels = memory_format, labels
        self.rows = rows or Rows(batch_size)
        self.device = torch.device(device) if device is not None else images.device
        self.pin = self.device.type == "cuda" and images.device.type == "cpu"

    def __len__(self) -> int:
        return (self.images.shape[0] if self.keep is None else len(self.keep)) // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(images, labels or None) per batch."""
        count = self.images.shape[0] if self.keep is None else len(self.keep)
        order = torch.randperm(count, generator=torch.Generator().manual_seed(self.seed * 1_000_003 + epoch))
        order = (order if self.keep is None else self.keep[order]).to(self.images.device)
        for i in range(len(self)):
            index = self.rows.take(order[i * self.batch_size:(i + 1) * self.batch_size])
            batch = augment(to_float(self._gather(index)), self.rotation, self.hflip, self.generator, self.rows)
            labels = None if self.labels is None else self.labels.index_select(0, index.to(self.labels.device))
            yield batch.contiguous(memory_format=self.memory_format), labels

    def _gather(self, index: torch.Tensor) -> torch.Tensor:
        if self.images.device == self.device:
            return self.images.index_select(0, index)
        out = torch.empty((index.numel(), *self.images.shape[1:]), dtype=torch.uint8, pin_memory=self.pin)
        torch.index_select(self.images, 0, index, out=out)
        return out.to(self.device, non_blocking=self.pin)
