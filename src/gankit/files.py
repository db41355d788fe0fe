"""File safety: every file gankit writes into a run directory or a cache goes through `atomic_write`; values
read back from files that anyone may have edited are checked with `is_whole` and `real_or`."""

from __future__ import annotations

import errno
import numbers
import os
import tempfile
from pathlib import Path
from typing import Callable

from gankit.errors import GankitError


def atomic_write(path: str | Path, write: Callable[[str], None], sync: bool = True) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    Errors name `path` (not the temporary file): OSError(errno, strerror, path). Writers that report a failed
    write in their own exception type (torch.save's RuntimeError on a full disk, safetensors' SafetensorError)
    are turned into OSError(EIO) too, so every failed write is one kind of error.
    """
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    os.close(fd)
    try:
        write(tmp)
        if sync:  # (sync=False: many small files a user can make again, e.g. generate's folder of PNGs)
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        if isinstance(exc, Exception) and not isinstance(exc, GankitError):
            # a writer's own failure type: torch.save's RuntimeError, safetensors' SafetensorError
            cause = (str(exc).strip().splitlines() or [type(exc).__name__])[-1][:200]
            raise OSError(errno.EIO, f"the write failed ({cause})", str(path)) from None
        raise

def cache_dir() -> Path:
    """Where gankit keeps what it can make again: packed folders, evaluators, real-feature references
    ($GANKIT_CACHE_DIR, default ~/.cache/gankit)."""
    env = os.environ.get("GANKIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "gankit"


def irregular(folder: Path, names) -> str | None:
    """The first of `names` in folder that exists but is no regular file (a FIFO or a device would block or
    stream forever when opened; a folder cannot be read), or None. Absent names are the caller's to judge."""
    return next((n for n in names if (folder / n).exists() and not (folder / n).is_file()), None)


def is_whole(value) -> bool:
    """An integer (numpy's too), not a bool: what a count, an epoch or an index read from a file must be."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def real_or(value, default: float) -> float:
    """value as a float when it is a real number (not a bool), else default."""
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def slug(name: str, keep: int = 60) -> str:
    """A name made safe for a file name in the cache: letters, digits, '-' and '_', its last `keep` characters."""
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[-keep:]


def write_to(out, write: Callable) -> None:
    """write(out) into a file object (a report's in-memory PNG), or atomic_write for a path: a new file renamed
    into place, never a write through a link."""
    if hasattr(out, "write"):
        write(out)
    else:
        atomic_write(out, write)


def own_in_place(path: Path) -> None:
    """Before a file is changed in place (appended to, cut): a symlink is refused with one line, and a file whose
    inode another name shares (a `cp -al` copy of a run) is first replaced by a copy of its own, so that a write
    never reaches a file through a link. Every other write gankit makes goes to a new file renamed over the old
    one (atomic_write), which replaces a link instead of writing through it."""
    if path.is_symlink():
        raise GankitError(f"{path} is a symbolic link: gankit changes a run's files only where they are regular "
                          "files of their own (copy a run with cp -r, not cp -s)")
    if path.is_file() and path.stat().st_nlink > 1:
        data = path.read_bytes()
        atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
