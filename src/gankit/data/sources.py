"""The data sources by name: plain data importing only the standard library, so that the command line lists
them without importing torch (gankit.data.loading loads them)."""

from __future__ import annotations

import difflib
import os
import stat
from pathlib import Path

TORCHVISION_SOURCES = {
    # name -> (torchvision class name, folder under data_dir, files it needs there)
    "mnist": ("MNIST", "MNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                     "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "fashion-mnist": ("FashionMNIST", "FashionMNIST/raw", ["train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                                                           "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"]),
    "cifar10": ("CIFAR10", "cifar-10-batches-py", ["data_batch_1", "data_batch_2", "data_batch_3", "data_batch_4",
                                                   "data_batch_5", "test_batch", "batches.meta"]),
}
SOURCES = ["mnist5k", *TORCHVISION_SOURCES, "folder:PATH", "packed:DIR"]
NAMES = ["mnist5k", *TORCHVISION_SOURCES]


def normalize(text: str) -> tuple[str, str | None]:
    """A source as the user typed it -> (the source, a note when it was read from a bare path): an existing
    folder given without `folder:` is taken as one (as `packed:` when it holds a pack.json)."""
    if text in NAMES or text.startswith(("folder:", "packed:")):
        return text, None
    path = Path(text).expanduser()
    if text.strip() and path.is_dir():  # "" is no folder (Path("") would be the current one)
        kind = "packed" if (path / "pack.json").is_file() else "folder"
        return f"{kind}:{text}", f"taking {text} as {kind}:{text}"
    return text, None


def unknown(text: str) -> str:
    """The one line for a source that is none of SOURCES: what it may have meant, and the choices."""
    close = difflib.get_close_matches(text.lower(), NAMES, n=1, cutoff=0.6)
    if close:
        hint = f"did you mean {close[0]}? "
    elif text.strip() and Path(text).expanduser().exists():
        hint = f"{text} is not a folder; a folder of images is folder:PATH. "
    elif "/" in text or text.startswith((".", "~")):
        hint = f"no folder {text} exists; a folder of images is folder:PATH. "
    else:
        hint = ""
    return f"unknown data source '{text}' ({hint}choose from: {', '.join(SOURCES)})"


NEEDS = {"folder": "a folder of image files (flat, or one subfolder per class)",
         "packed": "a folder that `gankit data SOURCE --pack DIR` wrote"}


def not_a_folder(path: Path, kind: str) -> str | None:
    """For folder:PATH (kind "folder") and packed:PATH ("packed"): None when PATH is a folder, else the one line
    saying what is there instead (nothing, a file, a FIFO, a broken link) and what the source needs."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        return None
    need = f"{kind}:PATH needs {NEEDS[kind]}"
    if mode is None:
        what = "a broken symbolic link" if path.is_symlink() else None
        missing = "image folder" if kind == "folder" else "pack"
        return f"{path} is {what}: {need}" if what else f"{missing} not found: {path} ({need})"
    what = "a file" if stat.S_ISREG(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "no folder"
    return f"{path} is {what}, not a folder: {need}"
