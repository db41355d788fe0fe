"""Drawing images from a generator: seeded noise in, float images or a uint8 grid out.

Used by training (the per-epoch grid, evaluations), `gankit generate` and `gankit evaluate`.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch

from gankit import images as images_mod
from gankit.data.batches import to_uint8
from gankit.models.registry import eval_mode, run


@torch.no_grad()
def sample(generator: torch.nn.Module, n: int, z_dim: int, seed: int = 0, batch: int = 500,
           device: str | torch.device = "cpu", labels: torch.Tensor | None = None,
           noise: torch.Tensor | None = None) -> torch.Tensor:
    """n images in [-1, 1] (float32, N x C x H x W on the CPU) from seeded standard-normal noise (or the
    given noise); a conditional generator needs n labels."""
    if noise is None:
        noise = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    ys = [None] * len(noise.split(batch)) if labels is None else labels.split(batch)
    return torch.cat([run(generator, chunk.to(device), None if y is None else y.to(device)).float().cpu()
                      for chunk, y in zip(noise.split(batch), ys)])


BLOCK = 1024  # rows of noise per block: a multiple of 16, so the blocks draw exactly what one draw of all n would


@torch.no_grad()
def sample_blocks(generator: torch.nn.Module, n: int, z_dim: int, seed: int = 0, device: str | torch.device = "cpu",
                  labels: Callable[[int, int], torch.Tensor | None] | None = None,
                  noise: torch.Tensor | None = None) -> Iterator[torch.Tensor]:
    """sample() for any n with flat memory: blocks of up to BLOCK images (float32 on the CPU), the noise drawn
    block by block from the same seeded stream; labels(start, stop) gives a block's labels (conditional)."""
    rng = torch.Generator().manual_seed(seed)
    for start in range(0, n, BLOCK):
        stop = min(n, start + BLOCK)
        z = noise[start:stop] if noise is not None else torch.randn(stop - start, z_dim, generator=rng)
        y = labels(start, stop) if labels is not None else None
        yield run(generator, z.to(device), None if y is None else y.to(device)).float().cpu()


@torch.no_grad()
def sample_grid(generator: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor | None = None,
                nrow: int | None = None) -> torch.Tensor:
    """Generate from `noise` (and labels) in eval mode and tile into one uint8 grid (C x H x W)."""
    with eval_mode(generator):
        images = run(generator, noise, labels)
    return images_mod.grid(to_uint8(images), nrow)
