"""Packs: a dataset decoded once into a folder that any number of processes memory-map.

A pack is a folder of three files:

    images.npy   uint8 N x C x H x W, numpy's .npy format
    labels.npy   int64 N (only for labeled data)
    pack.json    what it holds: source, image size, channels, count, classes, and a fingerprint of what it
                 was made from (a folder's file names, sizes and mtimes; a dataset's content hash)

`PackWriter` streams images into a new pack (rows are appended as they are decoded; nothing holds the whole
dataset) and renames it into place when complete, so a pack folder is either whole or absent. `open_pack`
checks every file against the others before anything is mapped: a truncated or foreign .npy, a JSON that does
not match its array, bytes appended or cut off, labels out of range are each one GankitError naming the pack.
Images up to IN_MEMORY_BYTES (or an eighth of the memory) are then read into memory (a mapped file cut short
by someone else kills the process with SIGBUS); larger ones are mapped, so that only the pages a batch touches
are read and every process of a run shares one copy. Labels beyond 8 million are mapped too (a pack of many
tiny images would otherwise spend 8 bytes a label before anything is used); batches convert the rows they take.

numpy has no way to append rows to an .npy file, so the 128-byte header is written here (the format is
numpy's documented version 1.0: magic, header length, a dict literal padded to 64-byte alignment).
"""

from __future__ import annotations

import contextlib
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

from gankit.data.sources import not_a_folder
from gankit.errors import GankitError
from gankit.files import alive, irregular, open_regular, read_regular_text

FORMAT, VERSION = "gankit-pack", 1
IMAGES, LABELS, META = "images.npy", "labels.npy", "pack.json"
HEADER = 128  # bytes before the first pixel of images.npy
MAX_META_BYTES = 64 << 20  # a pack.json larger than this is not one gankit wrote
IN_MEMORY_BYTES = 2 << 30  # a pack up to this size (or an eighth of the memory) is read, not mapped


def _npy_header(shape: tuple[int, ...]) -> bytes:
    text = repr({"descr": "|u1", "fortran_order": False, "shape": tuple(shape)})
    body = text.ljust(HEADER - 10 - 1) + "\n"
    head = b"\x93NUMPY\x01\x00" + struct.pack("<H", len(body)) + body.encode("latin1")
    if len(head) != HEADER:  # a shape with more than ~90 digits
        raise GankitError(f"cannot write a pack of shape {shape}")
    return head


@dataclass
class Pack:
    """An opened pack: images and labels in memory, or mapped from disk (copy-on-write: writes never reach the
    file), as open_pack decides by their size."""

    path: Path
    images: np.ndarray  # N x C x H x W uint8 (a numpy memmap for a large pack)
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
        self.file = None
        remove_orphans(self.dest.parent)
        with self._cleaned_up():
            self.tmp.mkdir(parents=True)
            self.file = open(self.tmp / IMAGES, "wb")
            self.file.write(b"\0" * HEADER)

    @contextlib.contextmanager
    def _cleaned_up(self):
        """Any failure while the pack is written (a full disk, a Ctrl-C) removes the partial pack first; an
        OSError then names the pack (not a file inside the hidden temporary folder) and says nothing was left."""
        try:
            yield
        except BaseException as exc:
            self.abort()
            if isinstance(exc, OSError):
                raise OSError(exc.errno, f"{exc.strerror or exc} (the partial pack was removed: nothing was "
                                         "written)", str(self.dest)) from None
            raise

    def add(self, image: np.ndarray) -> None:
        if image.shape != (self.channels, self.size, self.size):
            if self.fixed or image.shape[0] not in (1, 3) or image.shape[1:] != (self.size, self.size):
                raise ValueError(f"image of shape {image.shape} in a pack of {self.channels}x{self.size}x{self.size}")
        with self._cleaned_up():
            if image.shape[0] == 3 and self.channels == 1:
                self._to_rgb()  # the first color image: what came before becomes RGB too
            elif image.shape[0] == 1 and self.channels == 3:
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
               classes: list[str] | None = None, exclusive: bool = False, **extra: Any) -> Path:
        """Complete the pack (header, labels, pack.json, all flushed to disk) and rename it to `dest`.
        If `dest` appeared meanwhile: exclusive (a pack the user named), ours is dropped and GankitError says so;
        otherwise (the cache, where the same key is the same request) ours is dropped and theirs kept."""
        if not self.count:
            self.abort()
            raise GankitError(f"nothing to pack from {source}")
        with self._cleaned_up():
            self._complete(source, fingerprint, labels, classes, extra)
            try:
                os.rename(self.tmp, self.dest)  # (over an empty folder only: a folder with files in it stays)
            except OSError:
                if not (self.dest / META).is_file():
                    raise
                if exclusive:
                    raise GankitError(f"{self.dest} appeared while this pack was being made (another `gankit data "
                                      "--pack` at the same time?): it was left as it is and this pack was dropped; "
                                      "choose a new folder") from None
                self.abort()  # someone else's whole pack of the same request is already there
            _fsync_dir(self.dest.parent)
        return self.dest

    def _complete(self, source: str, fingerprint: str, labels: np.ndarray | None, classes: list[str] | None,
                  extra: dict[str, Any]) -> None:
        """Write the header, the labels and pack.json into the temporary folder, each flushed to disk."""
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

    def abort(self) -> None:
        """Remove the partial pack, even when closing its file fails too (a full disk cannot take the rest of
        the buffer: the folder must go all the same, or it would hold the space)."""
        try:
            if self.file is not None and not self.file.closed:
                self.file.close()
        except OSError:
            pass
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


ORPHAN = re.compile(r"^\..+\.(\d+)-[0-9a-f]{8}\.tmp$")


def remove_orphans(folder: Path) -> None:
    """Delete the temporary folders of packs whose writer is gone (killed before it could clean up)."""
    if not folder.is_dir():
        return
    for entry in folder.iterdir():
        match = ORPHAN.match(entry.name)
        if match and entry.is_dir() and not alive(int(match.group(1))):
            shutil.rmtree(entry, ignore_errors=True)


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

    if why := not_a_folder(path, "packed"):
        raise GankitError(why)
    if name := irregular(path, (META, IMAGES, LABELS)):
        raise bad(name)
    meta = _read_meta(path / META, bad)
    want = (meta["count"], meta["channels"], meta["image_size"], meta["image_size"])
    at = _check_array(IMAGES, _header(path / IMAGES, IMAGES, bad), np.dtype(np.uint8), want, bad)
    labels_at = _labels_offset(path, meta, bad)
    # what fits in memory is read into it: a file truncated by someone else while a run maps it would kill the
    # process (SIGBUS) with no word; larger files are mapped (every process of a run shares one copy). Labels are
    # read only up to 1/32 of that (64 MiB, 8 million images): a pack of many tiny images maps them.
    limit = in_memory_limit()
    images = _array(path / IMAGES, np.dtype(np.uint8), want, at, math.prod(want) <= limit, bad)
    labels = None if labels_at is None else _array(path / LABELS, np.dtype("<i8"), (meta["count"],), labels_at,
                                                   8 * meta["count"] <= limit // 32, bad)
    if labels is not None:
        _check_labels(labels, len(meta["classes"]), bad)
    return Pack(path, images, labels, meta)


def in_memory_limit() -> int:
    """The largest images.npy (in bytes) read into memory instead of mapped: IN_MEMORY_BYTES, or an
    eighth of the machine's memory when that is less."""
    try:
        ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        ram = 8 * IN_MEMORY_BYTES
    return min(IN_MEMORY_BYTES, ram // 8)


def _array(file: Path, dtype: np.dtype, shape: tuple[int, ...], offset: int, in_memory: bool, bad) -> np.ndarray:
    """The array of an .npy file whose header and size were checked: read into memory, or mapped (copy-on-write:
    writes never reach the file). A file cut while it is read is one GankitError."""
    if not in_memory:
        return np.memmap(file, dtype=dtype, mode="c", offset=offset, shape=shape)
    array = np.empty(shape, dtype)
    with open(file, "rb") as fh:
        fh.seek(offset)
        got = fh.readinto(memoryview(array.reshape(-1)).cast("B")) if array.size else 0
    if got != array.nbytes:
        raise bad(f"{file.name} was cut short while it was read ({got} of {array.nbytes} bytes)")
    return array


def _header(file: Path, name: str, bad) -> tuple[tuple[int, ...], bool, np.dtype, int, int]:
    """(shape, fortran_order, dtype, data offset, file size) of an .npy file, read without loading it.
    Any failure to parse it (a crafted header can raise almost anything) is one GankitError."""
    try:
        with open_regular(file) as fh:  # a FIFO put there after open_pack's check does not hang the read
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


def read_meta(path: str | Path) -> dict[str, Any]:
    """A pack's description (pack.json), checked, without opening its images."""
    return _read_meta(Path(path) / META, GankitError)


def _read_meta(file: Path, bad) -> dict[str, Any]:
    try:
        if file.stat().st_size > MAX_META_BYTES:
            raise bad(f"{META} is larger than any pack description")
        meta = json.loads(read_regular_text(file, MAX_META_BYTES))
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


def _labels_offset(path: Path, meta: dict[str, Any], bad) -> int | None:
    """Where labels.npy's labels start, after checking its header and size against pack.json (None: unlabeled)."""
    if meta.get("classes") is None:
        if (path / LABELS).exists():
            raise bad(f"it has {LABELS} but {META} names no classes")
        return None
    if not (path / LABELS).exists():
        raise bad(f"{META} names classes but {LABELS} is missing")
    return _check_array(LABELS, _header(path / LABELS, LABELS, bad), np.dtype("<i8"), (meta["count"],), bad)


def _check_labels(labels: np.ndarray, classes: int, bad, chunk: int = 1 << 20) -> None:
    """Every label within the classes, checked a chunk at a time (a mapped file is never copied whole)."""
    for start in range(0, len(labels), chunk):
        part = labels[start:start + chunk]
        if part.min() < 0 or part.max() >= classes:
            raise bad(f"{LABELS} has labels outside the {classes} classes")
