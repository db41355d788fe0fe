"""FAKES, the images a detector or an evaluation is given as generated: uint8 N x C x H x W, and where they
came from. FAKES is one of:
- a run directory: its generator (generator.safetensors, or best.safetensors with best=True) is sampled from
  seeded noise; a conditional generator draws the classes in turn;
- a folder of image files (flat or nested), each already at the size asked for;
- an .npy file from `gankit generate` (float32 in [-1, 1]), or a uint8 array, N x C x H x W.
Generated floats are quantized to 8 bits, as a saved image is: a detector must not tell fakes by pixel values
that no image file holds. Fakes are never resized: resizing erases (or adds) the traces detectors look for,
and changes what a metric measures, so a fake of another size is refused.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gankit.data import batches, folders, loading
from gankit.errors import GankitError
from gankit.files import open_regular, regular
from gankit.images import is_gray
from gankit.inference.sampling import sample_blocks
from gankit.models.registry import class_labels
from gankit.run.generator_file import export_info, load_generator, load_run_config
from gankit.run.layout import BEST, CONFIG, GENERATOR

RUN, FOLDER, NPY = "run", "folder", "npy"
MAX_IMAGES = 1_000_000  # per side of a training or evaluation set: held in memory as uint8


@dataclass
class Images:
    """uint8 images and a description of where they came from (recorded by training and evaluation)."""

    images: torch.Tensor
    source: dict = field(default_factory=dict)


def kind_of(path: str | Path) -> str:
    """run, folder or npy, or one line saying what FAKES may be."""
    p = Path(path)
    if p.is_dir() and regular(p / CONFIG):  # regular: a FIFO or a folder where a file belongs is said as such
        if not (regular(p / GENERATOR) or regular(p / BEST)):
            raise GankitError(f"the run {p} has no generator yet ({GENERATOR}): let it train an epoch first")
        return RUN
    if p.is_dir():
        return FOLDER
    if regular(p) and p.suffix.lower() == ".npy":
        return NPY
    raise GankitError(f"the fakes {path} are none of: a run directory (config.toml and {GENERATOR}), a folder of "
                      "images, an .npy file from `gankit generate`")


def shape_of(path: str | Path) -> tuple[int, int]:
    """(channels, size) of the fakes at path: a run's config, an array's shape, a folder's first image."""
    kind = kind_of(path)
    if kind == RUN:
        cfg = load_run_config(path)
        return cfg.channels, cfg.image_size
    if kind == NPY:
        array = _open_npy(Path(path))
        return array.shape[1], array.shape[2]
    for file in folders.list_images(Path(path)):
        shape = _file_shape(file)
        if shape is not None:
            return shape
    raise GankitError(f"no readable image in {path}")


def load_fakes(path: str | Path, n: int | None, shape: tuple[int, int], seed: int = 0,
               best: bool = False) -> Images:
    """Fakes from path at shape (channels, size): n drawn from a run (n required), else up to n from the files
    (a seeded random choice; all of them when n is None)."""
    kind = kind_of(path)
    if kind == RUN:
        return _from_run(Path(path), n or 0, shape, seed, best)
    if n is not None and n < 1:
        raise GankitError(f"-n must be >= 1, got {n}")
    if kind == NPY:
        return _from_npy(Path(path), n, shape, seed)
    return _from_folder(Path(path), n, shape, seed)


def _mismatch(what: str, got: tuple[int, int], shape: tuple[int, int]) -> GankitError:
    return GankitError(f"{what} holds {got[0]}-channel {got[1]}x{got[1]} images and the detector takes "
                       f"{shape[0]}-channel {shape[1]}x{shape[1]}: detectors judge pixels, so fakes are never "
                       "resized; give fakes of the detector's size (or train a detector at theirs)")


def _from_run(run: Path, n: int, shape: tuple[int, int], seed: int, best: bool) -> Images:
    if not 1 <= n <= MAX_IMAGES:
        raise GankitError(f"the number of fakes to draw must be in [1, {MAX_IMAGES:,}], got {n}")
    name = BEST if best else GENERATOR
    generator, cfg = load_generator(run, name=name)
    if (cfg.channels, cfg.image_size) != shape:
        raise _mismatch(f"the run {run}", (cfg.channels, cfg.image_size), shape)
    labels = class_labels(n, cfg.num_classes)  # a conditional generator draws the classes in turn
    blocks = sample_blocks(generator, n, cfg.z_dim, seed,
                           labels=None if labels is None else (lambda start, stop: labels[start:stop]))
    images = torch.cat([batches.to_uint8(block) for block in blocks])
    info = export_info(run, name)
    return Images(images, {"kind": RUN, "path": str(run.resolve()), "generator": "best" if best else "generator",
                           "epoch": info.get("epoch"), "step": info.get("step"), "seed": seed, "n": n})


def _open_npy(path: Path) -> np.ndarray:
    try:
        array = np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise GankitError(f"{path} is not a readable .npy array ({str(exc).splitlines()[0][:120]})") from None
    if (not isinstance(array, np.ndarray) or array.ndim != 4 or array.shape[1] not in (1, 3)
            or array.shape[2] != array.shape[3]
            or array.dtype.newbyteorder("=") not in (np.float32, np.float64, np.uint8)):  # either byte order
        raise GankitError(f"{path} holds a {getattr(array, 'dtype', '?')} array of shape "
                          f"{tuple(getattr(array, 'shape', ()))}, not N x C x H x W images (C 1 or 3, square; "
                          "float in [-1, 1] as `gankit generate` writes, or uint8)")
    return array


def pick(count: int, n: int | None, seed: int) -> torch.Tensor:
    """A seeded random choice of min(n, count) distinct indices out of count, in increasing order (all when n is
    None). Memory and time grow with n, not count: 50 rows of a 2x10^8-row array are drawn without permuting
    every row (a permutation only where most rows are drawn anyway)."""
    if n is None or n >= count:
        return torch.arange(count)
    rng = torch.Generator().manual_seed(seed)
    if count <= 4 * n:
        return torch.randperm(count, generator=rng)[:n].sort().values
    drawn = np.zeros(0, np.int64)
    while True:  # draws in order, repeats dropped: a uniform choice without replacement (a repeat is < 1 in 4)
        drawn = np.concatenate([drawn, torch.randint(count, (2 * n,), generator=rng).numpy()])
        _, first = np.unique(drawn, return_index=True)
        if len(first) >= n:
            return torch.from_numpy(np.sort(drawn[np.sort(first)[:n]]))


def _from_npy(path: Path, n: int | None, shape: tuple[int, int], seed: int) -> Images:
    array = _open_npy(path)
    if (array.shape[1], array.shape[2]) != shape:
        raise _mismatch(str(path), (array.shape[1], array.shape[2]), shape)
    if len(array) == 0:
        raise GankitError(f"{path} holds no images")
    rows = array[pick(len(array), min(n or MAX_IMAGES, MAX_IMAGES), seed).numpy()]
    chosen = torch.from_numpy(np.ascontiguousarray(rows, dtype=rows.dtype.newbyteorder("=")))  # native order
    if chosen.dtype != torch.uint8:
        if not torch.isfinite(chosen).all() or chosen.min() < -1.001 or chosen.max() > 1.001:
            raise GankitError(f"{path} holds values outside [-1, 1] (or NaN): not images as `gankit generate` "
                              "writes them")
        chosen = batches.to_uint8(chosen)
    return Images(chosen, {"kind": NPY, "path": str(path.resolve()), "n": len(chosen)})


def _file_shape(path: Path) -> tuple[int, int] | None:
    """(channels, size) of an image file without decoding it all, or None when unreadable; a non-square image
    is reported with its larger side (and refused as a mismatch)."""
    from PIL import Image

    try:
        with open_regular(path) as fh, Image.open(fh) as img:  # never a wait on a FIFO (gankit.files)
            return (1 if is_gray(img.mode) else 3), (img.size[0] if img.size[0] == img.size[1] else -max(img.size))
    except Exception:  # noqa: BLE001 - anything Pillow cannot open is an unreadable file
        return None


def read_native(path: Path, shape: tuple[int, int]) -> torch.Tensor | None:
    """One image file as uint8 C x S x S at the wanted shape (channels converted, never resized); None
    when unreadable; a file of another size is one line."""
    found = _file_shape(path)
    if found is None:
        return None
    if found[1] != shape[1]:
        side = abs(found[1])
        raise GankitError(f"{path} is {'not square' if found[1] < 0 else f'{side}x{side}'} where {shape[1]}x{shape[1]} "
                          "images are wanted: fakes are judged pixel for pixel, so they are never resized")
    image = folders.read_image(path, shape[1])
    return None if image is None else loading.fit(image.unsqueeze(0), shape[1], shape[0])[0]


def _from_folder(root: Path, n: int | None, shape: tuple[int, int], seed: int) -> Images:
    paths = folders.list_images(root)
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed)).tolist()
    images, skipped = [], 0
    for i in order:
        image = read_native(paths[i], shape)
        if image is None:
            skipped += 1
            continue
        images.append(image)
        if len(images) >= min(n or MAX_IMAGES, MAX_IMAGES):
            break
    if not images:
        raise GankitError(f"no readable image in {root} ({skipped} unreadable)")
    return Images(torch.stack(images), {"kind": FOLDER, "path": str(root.resolve()), "n": len(images),
                                        "skipped": skipped})
