"""Sampling from a trained run: the exported generator and the run's config, nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import data as data_mod
from .checkpoint import load_generator
from .errors import GankitError
from .images import grid, save_png
from .models import run_generator


@torch.no_grad()
def sample(generator: torch.nn.Module, n: int, z_dim: int, seed: int = 0, batch: int = 500,
           device: str | torch.device = "cpu", labels: torch.Tensor | None = None) -> torch.Tensor:
    """n images in [-1, 1] (float32, N x C x H x W on the CPU) from seeded standard-normal noise; a
    conditional generator needs n labels."""
    noise = torch.randn(n, z_dim, generator=torch.Generator().manual_seed(seed))
    ys = [None] * len(noise.split(batch)) if labels is None else labels.split(batch)
    return torch.cat([run_generator(generator, chunk.to(device), None if y is None else y.to(device)).float().cpu()
                      for chunk, y in zip(noise.split(batch), ys)])


def generate(run_dir: str | Path, n: int, out: str | Path, seed: int = 0, device: str = "cpu") -> Path:
    """Write n samples to `out`: .png -> one grid, .npy -> float32 array in [-1, 1], directory -> PNG each."""
    if n < 1:
        raise GankitError(f"-n must be >= 1, got {n}")
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".png", ".npy", "") and not out.is_dir():
        raise GankitError(f"output {out} must end in .png (grid) or .npy (array), or be a directory")
    generator, cfg = load_generator(run_dir, device)
    images = sample(generator, n, cfg.z_dim, seed, device=device)
    if out.is_dir() or kind == "":
        out.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(n - 1)))
        for i, img in enumerate(data_mod.to_uint8(images)):
            save_png(img, out / f"{i:0{width}d}.png")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == ".npy":
            np.save(out, images.numpy().astype(np.float32))
        else:
            save_png(grid(data_mod.to_uint8(images)), out)
    return out
