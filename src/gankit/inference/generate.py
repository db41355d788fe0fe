"""Sampling from a trained run: the exported generator and the run's config, nothing else."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import torch
from numpy.lib.format import open_memmap

from gankit import checks
from gankit.checks import whole
from gankit.data import batches
from gankit.errors import GankitError
from gankit.files import atomic_folder, atomic_write
from gankit.images import grid, save_gif, save_grid, save_png, upscale
from gankit.inference.outputs import check_folder, check_output
from gankit.inference.sampling import BLOCK, sample_blocks
from gankit.inference.trained import find_class, load
from gankit.models.registry import class_labels


def resolve_class(name: str, classes: list[str] | None, num_classes: int) -> int:
    """A class given by name ("7", "Sneaker") or by index, for a conditional run."""
    if not num_classes:
        raise GankitError("--class needs a conditional run: train with --set conditional=true")
    return find_class(name, classes or [str(i) for i in range(num_classes)])


def latent_walks(rows: int, frames: int, z_dim: int, seed: int = 0) -> torch.Tensor:
    """rows x frames noise vectors: row r walks in a straight line from random point r to random point r + 1."""
    ends = torch.randn(rows + 1, z_dim, generator=torch.Generator().manual_seed(seed))
    t = torch.linspace(0, 1, frames).view(1, frames, 1)
    return ends[:-1].unsqueeze(1) * (1 - t) + ends[1:].unsqueeze(1) * t


GRIDS = (".png", ".jpg", ".jpeg")  # output suffixes written as one grid picture (JPEG: quality 95)
MAX_SAMPLES = 10_000_000  # .npy files and folders are written block by block: memory stays flat for any n
MAX_GRID = 4096  # images in one PNG grid (and per GIF frame)
MAX_WALK_IMAGES = 100_000  # walks x frames with --interpolate


def generate(run_dir: str | Path, n: int | None, out: str | Path, seed: int = 0, device: str = "cpu",
             klass: str | None = None, interpolate: int = 0, gif: bool = False, best: bool = False,
             force: bool = False) -> Path:
    """Write samples of a run's generator to a file or folder; what `gankit generate` does.

    Args:
        run_dir: a gankit run directory.
        n: images (default 64), or walks with interpolate (default 8).
        out: a .png or .jpg/.jpeg path (one grid, enlarged to at least 512 px wide), a .npy path (float32
            N x C x H x W in [-1, 1]) or a directory (a PNG each, at the generator's size; an existing one is
            replaced as a whole, and only when it holds nothing but such numbered PNGs).
        seed: the noise seed: the same seed draws the same images (gankit.load(run_dir).sample(n, seed) too).
        device: "cpu", "cuda", ...
        klass: draw only this class, by name or index (conditional runs).
        interpolate: K > 1: n rows of K frames walking between random latent points (one walk per row).
        gif: with interpolate, also an animated GIF of the walks (out with .gif).
        best: draw from best.safetensors (the lowest FD during training) instead of the last generator.
        force: replace an existing output (a run directory's own files never are).
    Returns:
        the path written (out).
    """
    n = n if n is not None else (8 if interpolate else 64)
    if not isinstance(out, (str, Path)):
        raise GankitError(f"out must be a path (str or pathlib.Path), got {type(out).__name__}")
    out = Path(out)
    kind = "dir" if out.is_dir() or out.suffix == "" else out.suffix.lower()
    total = _check_request(n, interpolate, gif, kind, out, seed)
    generator = load(run_dir, best=best, device=device)
    _check_output(out, kind, gif, force)
    wanted = None if klass is None else resolve_class(klass, generator.classes, generator.num_classes)
    labels = _labels(generator.num_classes, n, interpolate, wanted)
    noise = latent_walks(n, interpolate, generator.z_dim, seed).reshape(total, -1) if interpolate else None
    blocks = sample_blocks(generator, total, generator.z_dim, seed, device=device, labels=labels, noise=noise)
    out.parent.mkdir(parents=True, exist_ok=True)
    if gif or kind in (*GRIDS, ".gif"):  # held whole: at most MAX_GRID images per grid, MAX_WALK_IMAGES walks
        floats = torch.cat(list(blocks))
        blocks, images = floats.split(BLOCK), batches.to_uint8(floats)
    if gif:
        frames = images.view(n, interpolate, *images.shape[1:])
        grids = [upscale(grid(frames[:, t])) for t in range(interpolate)]  # as wide as the grid files
        atomic_write(out.with_suffix(".gif"),
                     lambda tmp: save_gif(grids + grids[-2:0:-1], tmp, ms_per_frame=120))  # there and back
    if kind == "dir":
        _write_folder(out, blocks, total)
    elif kind == ".npy":
        _write_npy(out, blocks, (total, *generator.image_shape))
    elif kind in GRIDS:
        # a walk per row; a conditional grid of mixed classes has one class per column
        nrow = interpolate or (generator.num_classes if generator.num_classes and klass is None else None)
        atomic_write(out, lambda tmp: save_grid(grid(images, nrow=nrow), tmp, jpeg=kind != ".png"))
    return out


def _check_request(n: int, interpolate: int, gif: bool, kind: str, out: Path, seed: int) -> int:
    """The number of images asked for, or one line on why it cannot be written (the command's arguments and the
    Python API's alike: gankit.checks)."""
    n = whole(n, "-n", 1)
    checks.seed(seed)
    if interpolate and whole(interpolate, "--interpolate") < 2:
        raise GankitError(f"--interpolate needs at least 2 frames, got {interpolate}")
    if gif and not interpolate:
        raise GankitError("--gif animates a latent walk: add --interpolate FRAMES")
    if kind not in (*GRIDS, ".npy", "dir") and not (gif and kind == ".gif"):
        raise GankitError(f"output {out} must end in .png, .jpg or .jpeg (a grid) or .npy (an array), "
                          "or be a directory")
    total = n * interpolate if interpolate else n
    if interpolate and total > MAX_WALK_IMAGES:
        raise GankitError(f"{n} walks of {interpolate} frames are {total:,} images: at most {MAX_WALK_IMAGES:,}")
    per_grid = max(total if kind in GRIDS else 0, n if gif else 0)  # a PNG grid; a GIF frame: one per walk
    if per_grid > MAX_GRID:
        raise GankitError(f"a grid of {per_grid:,} images is too large to look at (at most {MAX_GRID:,}): "
                          "write a .npy file or a folder instead")
    if total > MAX_SAMPLES:
        raise GankitError(f"-n {total:,} is more than {MAX_SAMPLES:,} images: generate in several runs "
                          "(with different --seed values)")
    return total


def _check_output(out: Path, kind: str, gif: bool, force: bool) -> None:
    """Never into a run directory; an existing output only with force (gankit.inference.outputs)."""
    if kind == "dir":
        check_folder(out, force, "samples")
    elif kind != ".gif":
        check_output(out, [out], force, "samples")
    if gif:  # OUT.gif beside
        check_output(out.with_suffix(".gif"), [out.with_suffix(".gif")], force, "samples")


def _labels(num_classes: int, n: int, interpolate: int, wanted: int | None):
    """labels(start, stop) for a block of the requested images, or None for an unconditional generator."""
    if wanted is not None:
        return lambda start, stop: torch.full((stop - start,), wanted, dtype=torch.long)
    if num_classes and interpolate:
        walks = class_labels(n, num_classes).repeat_interleave(interpolate)  # one class per walk
        return lambda start, stop: walks[start:stop]
    if num_classes:
        return lambda start, stop: torch.arange(start, stop) % num_classes  # class_labels' turns
    return None


def _name(i: int, total: int) -> str:
    return f"{i:0{max(4, len(str(total - 1)))}d}.png"


def _write_folder(out: Path, blocks, total: int) -> None:
    """A PNG each, into a new folder that then takes out's place whole (check_folder allowed what it replaces):
    no old sample stays beside the new ones, and no name in it is written through (a link is replaced)."""
    def write(folder: Path) -> None:
        i = 0
        for block in blocks:
            for img in batches.to_uint8(block):
                save_png(img, folder / _name(i, total))  # a folder gankit just made: every name in it is new
                i += 1

    atomic_folder(out, write)


def _write_npy(out: Path, blocks, shape: tuple[int, ...]) -> None:
    """A float32 .npy written block by block through a memory map (flat memory), then renamed into place."""
    need = int(np.prod(shape)) * 4
    free = shutil.disk_usage(out.parent if out.parent.exists() else Path.cwd()).free
    if need > free:
        raise GankitError(f"{out} would take {need / 2**30:.1f} GiB and {out.parent} has {free / 2**30:.1f} GiB free")

    def write(tmp: str) -> None:
        array = open_memmap(tmp, mode="w+", dtype=np.float32, shape=shape)
        i = 0
        for block in blocks:
            array[i:i + len(block)] = block.numpy()
            i += len(block)
        array.flush()
        del array

    atomic_write(out, write)
