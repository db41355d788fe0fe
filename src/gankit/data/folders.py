"""Folders of image files, decoded once into a pack in the cache.

The first use of `folder:PATH` at a given image size and channel count decodes every file (in worker
processes, written straight into a pack; nothing holds the whole folder in memory) into
CACHE/packs/<folder>-<size>x<channels>-<key>. The key hashes the folder's file names, sizes and mtimes, so
the next use maps that pack without decoding a single image, and a changed folder (a file added, removed,
replaced or touched) is packed again; the older pack of the same folder is then deleted.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import time
import warnings
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from gankit.console import one_line
from gankit.data import caches, packs, transforms, workers
from gankit.data.sources import not_a_folder
from gankit.errors import GankitError
from gankit.files import cache_dir, open_regular, regular, slug
from gankit.images import is_gray, parse_background

IMAGE_EXTENSIONS = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm"}
CHUNK = 64  # files per task given to a decoding worker (gankit.data.workers)
SKIPPED_NAMED = 5  # unreadable files named in what packing says (and in pack.json); the rest are counted
MAX_ASPECT = 50  # an image with a side more than this many times the other is skipped, with its shape named
DECODER_VERSION = 3  # bump when read_image's pixels change: older cached packs are then not reused
# Pillow logs what it finds wrong in a crafted file ("More samples per pixel than can be decoded") before it
# raises; with no handler anywhere Python prints that on stderr. A file it cannot read is counted instead.
logging.getLogger("PIL").addHandler(logging.NullHandler())


def read_image(path: Path, image_size: int, background: str = "white") -> torch.Tensor | None:
    """One file as decode_file decodes it (a uint8 C x H x W tensor), without the transparency flag."""
    decoded = decode_file(path, image_size, background)
    return None if decoded is None else decoded[0]


def decode_file(path: Path, image_size: int, background: str = "white") -> tuple[torch.Tensor, bool] | None:
    """Decode, composite any transparency onto `background` (gankit.images.parse_background: a color, or
    "none" to drop the alpha and keep the stored colors), resize the short side to image_size and
    center-crop. Returns (uint8 tensor C x H x W with C = 1 or 3, whether the file had transparency), or None
    when it is skipped (decode_or_why says why)."""
    decoded = decode_or_why(path, image_size, background)
    return None if isinstance(decoded, str) else decoded


def decode_or_why(path: Path, image_size: int, background: str = "white") -> tuple[torch.Tensor, bool] | str:
    """decode_file's work, or why the file is skipped: "" when it is unreadable (damaged, not an image, a
    decompression bomb: more pixels than Pillow's MAX_IMAGE_PIXELS, whatever its size on disk; or anything a
    crafted file makes a decoder raise), the reason in words when its shape is absurd (a side more than
    MAX_ASPECT times the other: resizing its short side would make an image of billions of pixels from a few
    hundred bytes). So the work per file is bounded: at most MAX_IMAGE_PIXELS decoded, at most MAX_ASPECT x
    image_size^2 pixels resized. 16-bit grayscale is scaled to 8 bits, not clipped; no warning or log line of
    Pillow's reaches the terminal (palette transparency, truncated metadata): the caller counts."""
    from PIL import Image

    fill = parse_background(background)
    if not regular(path):  # a FIFO, a folder or a device given as an image: one line saying what it is
        return ""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_regular(path) as fh, Image.open(fh) as img:  # never blocks: see gankit.files
                if why := absurd_shape(*img.size):  # from the header, before a pixel is decoded
                    return why
                img.load()
                img, transparent = _flatten(img, fill)
    except Exception:  # noqa: BLE001 - OSError, ValueError, a bomb's warning, and a TypeError or struct.error
        return ""  # from a TIFF tag of the wrong type: one unreadable file either way
    return transforms.resize_crop(transforms.pil_to_tensor(img), image_size), transparent


def absurd_shape(width: int, height: int) -> str:
    """Why an image of this size is not decoded ("" when it may be): a side more than MAX_ASPECT times the other."""
    if min(width, height) < 1 or max(width, height) > MAX_ASPECT * min(width, height):
        return f"{width} x {height} pixels, a side over {MAX_ASPECT} times the other"
    return ""


def _flatten(img, fill: tuple[int, int, int] | None):
    """(an image in mode L or RGB, whether it had transparency). Palette, LA, PA, RGBA and images with a
    transparent color key are composited onto `fill` (None: the alpha is dropped); a gray image on a gray
    background stays one channel."""
    from PIL import Image

    gray = is_gray(img.mode) or (img.mode in ("P", "PA") and all(r == g == b for r, g, b in _palette_rgb(img)))
    transparent = "A" in img.getbands() or "transparency" in img.info
    if transparent and fill is not None:
        rgba = _deep_rgba(img) if img.mode.startswith("I") else img.convert("RGBA")
        flat = Image.alpha_composite(Image.new("RGBA", rgba.size, (*fill, 255)), rgba).convert("RGB")
        return (flat.convert("L") if gray and fill[0] == fill[1] == fill[2] else flat), True
    return (_to_8_bits(img) if gray else img.convert("RGB")), transparent


def _deep_rgba(img):
    """A 16- or 32-bit gray image as RGBA: its gray scaled to 8 bits, its transparent gray level (a PNG's tRNS
    key, which the scaling would lose) as the alpha."""
    from PIL import Image

    rgba = _to_8_bits(img).convert("RGBA")
    key = img.info.get("transparency")
    if isinstance(key, int):
        rgba.putalpha(Image.fromarray(np.where(np.asarray(img) == key, 0, 255).astype(np.uint8), "L"))
    return rgba


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


def list_images(root: Path) -> list[Path]:
    """The image files under root (flat, or in subfolders; symbolic links to files followed, to folders not),
    sorted. A subfolder that cannot be listed (no permission) is one GankitError: its images would otherwise be
    left out without a word."""
    if why := not_a_folder(root, "folder"):
        raise GankitError(why)
    paths, todo = [], [root]
    while todo:
        folder = todo.pop()
        try:
            entries = _entries(folder)
        except OSError as exc:
            raise GankitError(f"cannot list the folder {folder} ({exc.strerror or type(exc).__name__}): its images "
                              f"would be left out; make it readable (chmod -R u+rX) or move it out of {root}") from None
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append(Path(entry.path))
            elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS and _is_file(entry):
                paths.append(Path(entry.path))
    paths.sort()
    if not paths:
        raise GankitError(f"no images in {root} (looked for {', '.join(sorted(IMAGE_EXTENSIONS))}, "
                          "flat or one subfolder per class)")
    return paths


def _entries(folder: Path) -> list[os.DirEntry]:
    """One folder's listing (OSError when it cannot be listed)."""
    with os.scandir(folder) as listing:
        return list(listing)


def _is_file(entry: os.DirEntry) -> bool:
    """What stands under an image's name and is not a folder: a file, or a FIFO, a device or a socket (listed, so
    that reading it says what it is instead of leaving it out without a word); a dangling link is not listed."""
    try:
        return entry.is_file() or (not entry.is_dir() and entry.stat() is not None)
    except FileNotFoundError:  # a dangling link
        return False
    except OSError:  # a link into a folder that cannot be searched: decoding will count it as unreadable
        return True


def look(root: Path, sample: int = 64) -> tuple[bool, tuple[int, int]] | None:
    """A quick look at a folder before anything is decoded: (whether any of up to `sample` files spread over it
    holds color, their median width and height), from the files' headers alone; None when none opens."""
    from PIL import Image

    paths = list_images(root)
    color, sizes = False, []
    for p in paths[:: max(1, len(paths) // sample)][:sample]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                with open_regular(p) as fh, Image.open(fh) as img:  # a FIFO swapped in: skipped, no wait
                    sizes.append(img.size)
                    color = color or not (is_gray(img.mode) or (img.mode in ("P", "PA") and all(
                        r == g == b for r, g, b in _palette_rgb(img))))
        except Exception:  # noqa: BLE001 - unreadable (as decode_file counts it): a look skips it
            continue
    if not sizes:
        return None
    widths, heights = sorted(w for w, _ in sizes), sorted(h for _, h in sizes)
    return color, (widths[len(widths) // 2], heights[len(heights) // 2])


def fingerprint(root: Path, paths: list[Path]) -> str:
    """A hash of the files' names (relative to root), sizes and modification times."""
    h = hashlib.sha256()
    for p in paths:
        st = p.stat()
        entry = f"{p.relative_to(root).as_posix()}\0{st.st_size}\0{st.st_mtime_ns}\n"
        h.update(entry.encode("utf-8", "surrogateescape"))
    return h.hexdigest()


def layout_labels(root: Path, paths: list[Path]) -> tuple[np.ndarray | None, list[str] | None]:
    """One subfolder per class (ImageFolder layout) gives labels; anything else is unlabeled."""
    parents = [p.parent.relative_to(root) for p in paths]
    if not all(len(q.parts) == 1 for q in parents):
        return None, None
    classes = sorted({q.parts[0] for q in parents})
    index = {c: i for i, c in enumerate(classes)}
    return np.array([index[q.parts[0]] for q in parents], dtype=np.int64), classes


# ------------------------------------------------------------------ decoding (worker processes)
def _decode(task: tuple[list[Path], int, int, str]) -> list[tuple[np.ndarray, bool] | str]:
    """Decode files at image_size with `channels` (0: as they are) onto `background`: (pixels, had
    transparency) per file, or why it was skipped (decode_or_why: "" for an unreadable one)."""
    paths, image_size, channels, background = task
    out = []
    for p in paths:
        decoded = decode_or_why(p, image_size, background)
        if isinstance(decoded, str):
            out.append(decoded)
            continue
        t, transparent = decoded
        if channels == 1 and t.shape[0] == 3:
            t = transforms.rgb_to_grayscale(t)
        elif channels == 3 and t.shape[0] == 1:
            t = t.expand(3, -1, -1)
        out.append((t.numpy(), transparent))
    return out


def decode_all(paths: list[Path], image_size: int, channels: int,
               background: str = "white") -> Iterator[tuple[np.ndarray, bool] | str]:
    """Every file decoded, in order, by worker processes (in this process when there are only a few; a Ctrl-C
    ends them at once: gankit.data.workers)."""
    tasks = [(paths[i:i + CHUNK], image_size, channels, background) for i in range(0, len(paths), CHUNK)]
    for decoded in workers.in_order(_decode, tasks):
        yield from decoded


# ------------------------------------------------------------------ the cache
def pack_folder(root: Path, dest: Path, image_size: int, channels: int, files: list[Path] | None = None,
                background: str = "white", exclusive: bool = False, fp: str | None = None) -> Path:
    """Decode the folder into a new pack at dest. Unreadable files are left out, counted and the first few
    named in pack.json ("skipped", "skipped_files", with the reason where there is one beyond "unreadable"); so
    is how many had transparency ("transparent"). A folder whose listing (names, sizes, times, inodes) changed
    while it was decoded is one GankitError, and nothing is written. exclusive: dest is the user's (see
    PackWriter.finish). Any failure or a Ctrl-C removes the partial pack; a Ctrl-C's message says so."""
    paths = files if files is not None else list_images(root)
    before, listing = fp or fingerprint(root, paths), _listing(paths)
    labels, classes = layout_labels(root, paths)
    writer = packs.PackWriter(dest, image_size, channels)
    kept: list[int] = []
    reasons: dict[int, str] = {}
    transparent = 0
    try:
        for i, decoded in enumerate(decode_all(paths, image_size, channels, background)):
            if isinstance(decoded, str):
                reasons[i] = decoded
                continue
            writer.add(decoded[0])
            transparent += decoded[1]
            kept.append(i)
        if not kept:
            raise GankitError(f"none of the {len(paths)} image files in {root} could be read")
        if list_images(root) != paths or _listing(paths) != listing:
            raise GankitError(f"{root} changed while it was being packed (files added, removed or modified): "
                              "run again once it is stable (nothing was written or cached)")
        return writer.finish(f"folder:{root}", before, None if labels is None else labels[kept], classes,
                             exclusive, skipped=len(paths) - len(kept), skipped_files=_skipped(root, paths, reasons),
                             transparent=transparent, background=background, decoder=DECODER_VERSION)
    except KeyboardInterrupt:
        writer.abort()
        raise KeyboardInterrupt(f"packing {root} stopped: the partial pack was removed (nothing was written to "
                                f"{dest})") from None
    except BaseException:
        writer.abort()
        raise


def _listing(paths: list[Path]) -> list[tuple[int, ...]] | None:
    """What packing compares before and after: each file's size, modification and change times and inode (a file
    rewritten in place with its old mtime put back still has a new ctime); None when one is gone."""
    try:
        return [(st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino) for st in map(os.stat, paths)]
    except OSError:
        return None


def _misfit(pack: packs.Pack, wanted: dict, fill: tuple[int, int, int] | None, files: int) -> str | None:
    """What is wrong with a cached pack for this request (caches.reuse's check): it must record this folder, its
    current files' fingerprint, the size, channels, decoder and background asked for, and account for every file
    (packed or skipped)."""
    if why := caches.mismatch(pack.meta, wanted):
        return why
    background = pack.meta.get("background")
    if not isinstance(background, str) or parse_background(background) != fill:
        return f"its background is {shown(str(background), 40)}"
    if pack.meta["count"] + meta_count(pack.meta, "skipped") != files:
        return f"it holds {pack.meta['count']} images and skipped {meta_count(pack.meta, 'skipped')} of {files} files"
    return None


def _skipped(root: Path, paths: list[Path], reasons: dict[int, str], first: int = SKIPPED_NAMED) -> list[str]:
    """The first few skipped files' names, relative to the folder, each with its reason when it has one."""
    return [paths[i].relative_to(root).as_posix() + (f" ({reasons[i]})" if reasons[i] else "")
            for i in sorted(reasons)[:first]]


def decoding_notes(meta: dict) -> list[str]:
    """What packing did that a user should hear of, a line each: files skipped (named) and transparency.
    pack.json may be anyone's: a count that is no whole number in range says nothing, and a name is shown
    short and on one line (shown)."""
    notes = []
    if skipped := meta_count(meta, "skipped"):
        files = meta.get("skipped_files")
        names = [shown(n) for n in files[:SKIPPED_NAMED] if isinstance(n, str)] if isinstance(files, list) else []
        more = f" and {skipped - len(names)} more" if names and skipped > len(names) else ""
        notes.append(f"skipped {skipped} unreadable file(s)" + (f": {', '.join(names)}{more}" if names else ""))
    if transparent := meta_count(meta, "transparent"):
        background = meta.get("background")
        background = shown(background, 40) if isinstance(background, str) else "white"
        how = ("their alpha dropped (background=none)" if background.strip().lower() == "none"
               else f"composited onto {background} (setting background=COLOR or none changes it)")
        notes.append(f"{transparent} of {meta.get('count', transparent)} images have transparency: {how}")
    return notes


def meta_count(meta: dict, key: str) -> int:
    """A count of files from pack.json: a whole number in [0, 2**40], else 0 (a value gankit never wrote)."""
    value = meta.get(key, 0)
    return value if type(value) is int and 0 <= value <= 2**40 else 0


def shown(text: str, keep: int = 120) -> str:
    """A file name (or any text from a file) as a message shows it: control characters escaped, so that it
    stays on one line and cannot steer the terminal, and at most `keep` characters."""
    return one_line(text[:keep]) + ("..." if len(text) > keep else "")


def cached_pack(root: Path, image_size: int, channels: int, say=None,
                background: str = "white") -> tuple[packs.Pack, bool]:
    """The folder's pack from the cache, made now if there is none for its current files.
    Returns (pack, True if it came from the cache). A cache entry that is damaged or does not record this
    folder, its current files and these settings (caches.reuse, _misfit) is deleted and made again."""
    root = root.resolve()
    paths = list_images(root)
    fill = parse_background(background)  # one key per color, however it is spelled ("white", "#fff", ...)
    shade = "none" if fill is None else "%02x%02x%02x" % fill
    fp = fingerprint(root, paths)
    key = hashlib.sha256(f"{fp}|{image_size}|{channels}|{shade}|{DECODER_VERSION}|"
                         f"{packs.VERSION}".encode()).hexdigest()[:16]
    where = hashlib.sha256(str(root).encode("utf-8", "surrogateescape")).hexdigest()[:8]
    family = f"{slug(root.name, 40) or 'folder'}-{where}-{image_size}x{channels or 'auto'}-{shade}"
    home = cache_dir() / "packs"
    dest = home / f"{family}-{key}"
    wanted = {"source": f"folder:{root}", "fingerprint": fp, "image_size": image_size,
              "decoder": DECODER_VERSION, **({"channels": channels} if channels else {})}
    found = caches.reuse(dest, "pack", packs.open_pack, lambda p: _misfit(p, wanted, fill, len(paths)), say)
    if found is not None:
        return found, True
    home.mkdir(parents=True, exist_ok=True)
    if say:
        say(f"packing {len(paths)} images of {root} into {dest} (once; later runs map it)")
    start = time.perf_counter()
    pack_folder(root, dest, image_size, channels, paths, background, fp=fp)
    for old in home.glob(f"{family}-*"):  # older packs of this folder at this size: superseded
        if old.name != dest.name and old.is_dir():
            shutil.rmtree(old, ignore_errors=True)
    pack = packs.open_pack(dest)
    pack.meta["seconds"] = round(time.perf_counter() - start, 2)
    for line in decoding_notes(pack.meta) if say else ():
        say(line)
    return pack, False
