"""Packs: a dataset decoded once into a folder that any number of processes memory-map.

A pack is a folder of three files:

    images.npy   uint8 N x C x H x W, numpy's .npy format (mapped, never read into memory)
    labels.npy   int64 N (only for labeled data)
    pack.json    what it holds: source, image size, channels, count, classes, and a fingerprint of what it
                 was made from (a folder's file names, sizes and mtimes; a dataset's content hash)

`PackWriter` streams images into a new pack (rows are appended as they are decoded; nothing holds the whole
dataset) and renames it into place when complete, so a pack folder is either whole or absent. `open_pack`
checks every file against the others before anything is mapped: a truncated or foreign .npy, a JSON that does
not match its array, labels out of range are each one GankitError naming the pack.

numpy has no way to append rows to an .npy file, so the 128-byte header is written here (the format is
numpy's documented version 1.0: magic, header length, a dict literal padded to 64-byte alignment).
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gankit.errors import GankitError
from gankit.files import irregular

FORMAT, VERSION = "gankit-pack", 1
IMAGES, LABELS, META = "images.npy", "labels.npy", "pack.json"
HEADER = 128  # bytes before the first pixel of images.npy
MAX_META_BYTES = 64 << 20  # a pack.json larger than this is not one gankit wrote


def _npy_header(shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    body = text.ljust(HEADER - 10 - 1) + "\n"
    head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")
    if len(head) != HEADER:  # a shape with more than ~90 digits
        raise GankitError(f"cannot write a pack of shape {shape}")
    return head


@dataclass
class Pack:
    """An opened pack: images mapped from disk (copy-on-write: writes never reach the file), labels in memory."""

    path: Path
    images: np.ndarray  # a numpy memmap, N x C x H x W uint8
    labels: np.ndarray | None
    meta: dict[str, Any]

    @property
    def classes(self) -> list[str] | None:
        return self.meta.get("classes")

    @property
    def fingerprint(self) -> str:
        return self.meta["fingerprint"]


class PackWriter:
    """Append images (C x H x W uint8 arrays) to a new pack at `dest`; `finish` makes it appear there whole.

    channels: 1 or 3 converts nothing (the caller gives images with that many); 0 keeps one channel while every
    image is grayscale and turns what was written so far to RGB when the first color image arrives.
    """

    def __init__(self, dest: Path, image_size: int, channels: int = 0):
        self.dest, self.size, self.fixed = Path(dest), image_size, bool(channels)
        self.channels, self.count = channels or 1, 0
        self.tmp = self.dest.parent / f".{self.dest.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp"
        remove_orphans(self.dest.parent)
        self.tmp.mkdir(parents=True)
        self.file = open(self.tmp / IMAGES, "wb")
        self.file.write(b"\0" * HEADER)

    def add(self, image: np.ndarray) -> None:
        if image.shape != (self.channels, self.size, self.size):
            if self.fixed or image.shape[0] not in (1, 3) or image.shape[1:] != (self.size, self.size):
                raise ValueError(f"image of shape {image.shape} in a pack of {self.channels}x{self.size}x{self.size}")
            if image.shape[0] == 3:
                self._to_rgb()  # the first color image: what came before becomes RGB too
            else:
                image = np.repeat(image, 3, axis=0)  # gray after color
        self.file.write(np.ascontiguousarray(image, dtype=np.uint8).tobytes())
        self.count += 1

    def _to_rgb(self) -> None:
        """Rewrite the grayscale rows written so far as three equal channels."""
        self.file.close()
        old, row = self.tmp / (IMAGES + ".gray"), self.size * self.size
        os.replace(self.tmp / IMAGES, old)
        with open(old, "rb") as src, open(self.tmp / IMAGES, "wb") as dst:
            dst.write(src.read(HEADER))
            while chunk := src.read(row * 4096):
                gray = np.frombuffer(chunk, np.uint8).reshape(-1, 1, row)
                dst.write(np.repeat(gray, 3, axis=1).tobytes())
        old.unlink()
        self.file, self.channels = open(self.tmp / IMAGES, "r+b"), 3
        self.file.seek(0, os.SEEK_END)

    def finish(self, source: str, fingerprint: str, labels: np.ndarray | None = None,
               classes: list[str] | None = None, **extra: Any) -> Path:
        """Complete the pack (header, labels, pack.json, all flushed to disk) and rename it to `dest`.
        If `dest` appeared meanwhile (another process packed the same thing), ours is dropped and theirs kept."""
        if not self.count:
            self.abort()
            raise GankitError(f"nothing to pack from {source}")
        self.file.seek(0)
        self.file.write(_npy_header((self.count, self.channels, self.size, self.size)))
        self.file.flush()
        os.fsync(self.file.fileno())
        self.file.close()
        if labels is not None:
            with open(self.tmp / LABELS, "wb") as fh:
                np.save(fh, np.asarray(labels, dtype=np.int64))
                fh.flush()
                os.fsync(fh.fileno())
        meta = {"format": FORMAT, "version": VERSION, "source": source, "image_size": self.size,
                "channels": self.channels, "count": self.count, "classes": classes, "fingerprint": fingerprint,
                **extra}
        with open(self.tmp / META, "w", encoding="utf-8") as fh:
            json.dump(meta, fh, indent=1)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.rename(self.tmp, self.dest)
        except OSError:
            if not (self.dest / META).is_file():
                self.abort()
                raise
            self.abort()  # someone else's whole pack is already there
        _fsync_dir(self.dest.parent)
        return self.dest

    def abort(self) -> None:
        if not self.file.closed:
            self.file.close()
        shutil.rmtree(self.tmp, ignore_errors=True)


ORPHAN = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp$")


def remove_orphans(folder: Path) -> None:
    """Delete the temporary folders of packs whose writer is gone (killed before it could clean up)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = ORPHAN.match(entry.name)
        if match and entry.is_dir() and not _alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def open_pack(path: str | Path) -> Pack:
    """Open and check a pack; GankitError saying what is wrong with it otherwise."""
    path = Path(path)

    def bad(why: str) -> GankitError:
        return GankitError(f"{path} is not a usable gankit pack: {why} (make it again with "
                           f"`gankit data SOURCE --pack DIR`)")

    if not path.is_dir():
        raise GankitError(f"pack not found: {path} (make one with `gankit data SOURCE --pack {path}`)")
    if name := irregular(path, (META, IMAGES, LABELS)):
        raise bad(f"{name} is not a regular file")
    meta = _read_meta(path / META, bad)
    want = (meta["count"], meta["channels"], meta["image_size"], meta["image_size"])
    images = _map_images(path / IMAGES, want, bad)
    return Pack(path, images, _read_labels(path, meta, bad), meta)


def _header(file: Path, name: str, bad) -> tuple[tuple[int, ...], bool, np.dtype, int, int]:
    """(shape, fortran_order, dtype, data offset, file size) of an .npy file, read without loading it.
    Any failure to parse it (a crafted header can raise almost anything) is one GankitError."""
    try:
        with open(file, "rb") as fh:
            major, _ = np.lib.format.read_magic(fh)
            read = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(fh)
            return tuple(int(d) for d in shape), bool(fortran), dtype, fh.tell(), os.fstat(fh.fileno()).st_size
    except FileNotFoundError:
        raise bad(f"{name} is missing") from None
    except Exception as exc:  # noqa: BLE001 - ValueError, SyntaxError, tokenize errors, RecursionError, ...
        first = (str(exc).splitlines() or [type(exc).__name__])[0][:120]
        raise bad(f"{name} is damaged or not an array ({first})") from None


def _check_array(name: str, header, want_dtype: np.dtype, want: tuple[int, ...], bad) -> int:
    """Check dtype, order, shape and exact size against what pack.json says; returns the data offset."""
    shape, fortran, dtype, offset, size = header
    if fortran:
        raise bad(f"{name} is stored in Fortran (column-major) order; packs are row-major")
    if dtype != want_dtype or shape != want:
        raise bad(f"{name} holds {dtype} {shape}, {META} says {want_dtype} {want}")
    expected = offset + math.prod(want) * want_dtype.itemsize  # Python integers: no overflow
    if size != expected:
        raise bad(f"{name} is {size} bytes, not the {expected} its header says (truncated or appended to)")
    return offset


def _map_images(file: Path, want: tuple[int, ...], bad) -> np.memmap:
    """Check images.npy's header and size against what pack.json says, then map it (copy-on-write)."""
    offset = _check_array(IMAGES, _header(file, IMAGES, bad), np.dtype(np.uint8), want, bad)
    return np.memmap(file, dtype=np.uint8, mode="c", offset=offset, shape=want)


def _read_meta(file: Path, bad) -> dict[str, Any]:
    try:
        if file.stat().st_size > MAX_META_BYTES:
            raise bad(f"{META} is larger than any pack description")
        meta = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise bad(f"{META} is missing") from None
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as exc:  # ValueError: JSON, huge integers
        raise bad(f"{META} is unreadable ({type(exc).__name__})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise bad(f"{META} does not describe a gankit pack")
    if meta.get("version") != VERSION:
        raise bad(f"it is version {meta.get('version')!r} of the format; this gankit reads version {VERSION}")
    ints = {"count": (1, 2**40), "channels": (1, 3), "image_size": (1, 1 << 16)}
    for key, (low, high) in ints.items():
        value = meta.get(key)
        if type(value) is not int or not low <= value <= high or (key == "channels" and value == 2):
            raise bad(f"{META} has a bad {key}: {value!r}")
    classes = meta.get("classes")
    if classes is not None and not (isinstance(classes, list) and classes and all(isinstance(c, str) for c in classes)):
        raise bad(f"{META} has a bad class list")
    if not isinstance(meta.get("fingerprint"), str) or not isinstance(meta.get("source"), str):
        raise bad(f"{META} lacks its source or fingerprint")
    return meta


def _read_labels(path: Path, meta: dict[str, Any], bad) -> np.ndarray | None:
    classes = meta.get("classes")
    if classes is None:
        if (path / LABELS).exists():
            raise bad(f"it has {LABELS} but {META} names no classes")
        return None
    if not (path / LABELS).exists():
        raise bad(f"{META} names classes but {LABELS} is missing")
    want = (meta["count"],)
    offset = _check_array(LABELS, _header(path / LABELS, LABELS, bad), np.dtype("<i8"), want, bad)
    labels = np.fromfile(path / LABELS, dtype="<i8", count=want[0], offset=offset).astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() >= len(classes)):
        raise bad(f"{LABELS} has labels outside the {len(classes)} classes")
    return labels
