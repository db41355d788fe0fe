"""Sampling from a trained run: the exported generator and the run's config, nothing else."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from . import data as data_mod
from .checkpoint import BEST, GENERATOR, export_info, load_generator
from .errors import GankitError
from .images import grid, save_gif, save_png
from .models import class_labels
from .sampling import sample


def resolve_class(name: str, classes: list[str] | None, num_classes: int) -> int:
    """A class given by name ("7", "Sneaker") or by index, for a conditional run."""
    if not num_classes:
        raise GankitError("--class needs a conditional run: train with --set conditional=true")
    classes = classes or [str(i) for i in range(num_classes)]
    if name in classes:
        return classes.index(name)
    if name.isdigit() and int(name) < num_classes:
        return int(name)
    raise GankitError(f"unknown class {name!r}: this run draws {', '.join(classes)}")


def latent_walks(rows: int, frames: int, z_dim: int, seed: int = 0) -> torch.Tensor:
    """rows x frames noise vectors: row r walks in a straight line from random point r to random point r + 1."""
    ends = torch.randn(rows + 1, z_dim, generator=torch.Generator().manual_seed(seed))
    t = torch.linspace(0, 1, frames).view(1, frames, 1)
    return ends[:-1].unsqueeze(1) * (1 - t) + ends[1:].unsqueeze(1) * t


def generate(run_dir: str | Path, n: int | None, out: str | Path, seed: int = 0, device: str = "cpu",
             klass: str | None = None, interpolate: int = 0, gif: bool = False, best: bool = False) -> Path:
    """Write samples to `out`: .png -> one grid, .npy -> float32 array in [-1, 1], directory -> PNG each.

    best: draw from best.safetensors (the lowest FD during training) instead of the last generator.
    klass: draw only this class (conditional runs). interpolate=K: n rows of K frames walking between random
    latent points (a grid with one walk per row); gif: also an animated GIF of the walks (out with .gif).
    """
    n = n if n is not None else (8 if interpolate else 64)
    if n < 1:
        raise GankitError(f"-n must be >= 1, got {n}")
    if interpolate and interpolate < 2:
        raise GankitError(f"--interpolate needs at least 2 frames, got {interpolate}")
    if gif and not interpolate:
        raise GankitError("--gif animates a latent walk: add --interpolate FRAMES")
    out = Path(out)
    kind = out.suffix.lower()
    if kind not in (".png", ".npy", "") and not (gif and kind == ".gif") and not out.is_dir():
        raise GankitError(f"output {out} must end in .png (grid) or .npy (array), or be a directory")
    generator, cfg = load_generator(run_dir, device, name=BEST if best else GENERATOR)

    total = n * interpolate if interpolate else n
    if klass is not None:
        wanted = resolve_class(klass, export_info(run_dir).get("classes"), cfg.num_classes)
        labels = torch.full((total,), wanted, dtype=torch.long)
    elif cfg.num_classes and interpolate:
        labels = class_labels(n, cfg.num_classes).repeat_interleave(interpolate)  # one class per walk
    else:
        labels = class_labels(total, cfg.num_classes)
    noise = latent_walks(n, interpolate, cfg.z_dim, seed).reshape(total, -1) if interpolate else None
    images = sample(generator, total, cfg.z_dim, seed, device=device, labels=labels, noise=noise)
    if gif:
        frames = data_mod.to_uint8(images).view(n, interpolate, *images.shape[1:])
        grids = [grid(frames[:, t]) for t in range(interpolate)]
        out.parent.mkdir(parents=True, exist_ok=True)
        save_gif(grids + grids[-2:0:-1], out.with_suffix(".gif"), ms_per_frame=120)  # there and back
        if kind == ".gif":
            return out
    if out.is_dir() or kind == "":
        out.mkdir(parents=True, exist_ok=True)
        width = max(4, len(str(total - 1)))
        for i, img in enumerate(data_mod.to_uint8(images)):
            save_png(img, out / f"{i:0{width}d}.png")
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        if kind == ".npy":
            np.save(out, images.numpy().astype(np.float32))
        else:
            # a walk per row; a conditional grid of mixed classes has one class per column
            nrow = interpolate or (cfg.num_classes if cfg.num_classes and klass is None else None)
            save_png(grid(data_mod.to_uint8(images), nrow=nrow), out)
    return out
