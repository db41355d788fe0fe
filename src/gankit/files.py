"""File safety: every file gankit writes into a run directory or a cache goes through `atomic_write`; every file
it reads is a regular file (`regular`, `open_regular`, `read_regular`: a FIFO, a folder or a device there is one
line saying what it is, never a wait), its size bounded; values read back from files that anyone may have edited
are checked with `is_whole` and `real_or`."""

from __future__ import annotations

import errno
import numbers
import os
import re
import shutil
import stat
import tempfile
from pathlib import Path
from typing import BinaryIO, Callable

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
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.name), suffix=".tmp", dir=path.parent)
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


def atomic_folder(dest: str | Path, write: Callable[[Path], None]) -> Path:
    """Call write(tmp) on a new empty folder beside `dest`, then put it in dest's place whole (a link to a folder:
    in the place of the folder it names): a crash leaves the old folder or the new one, never a mix, and a new
    set of files never lies beside an old one. An existing dest is removed: the caller has checked that all of
    it is gankit's to replace. Returns the folder written. Errors name dest, as atomic_write's do."""
    dest = Path(dest).resolve() if Path(dest).is_symlink() else Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    remove_orphans(dest.parent, dest.name)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), suffix=".tmp", dir=dest.parent))
    old = None
    try:
        write(tmp)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700; give the folder the permissions mkdir would
        if dest.is_dir() and Path.cwd().resolve().is_relative_to(dest.resolve()):
            _swap_contents(tmp, dest)  # the folder this process works in keeps its place (see _swap_contents)
            return dest
        if dest.is_dir():
            old = Path(tempfile.mkdtemp(prefix=temp_prefix(dest.name), suffix=".tmp", dir=dest.parent))
            os.replace(dest, old)  # (a folder renamed over an empty one)
        os.rename(tmp, dest)
    except BaseException as exc:
        if old is not None and not dest.exists():
            os.replace(old, dest)  # the old folder back in its place
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(exc, OSError):
            raise OSError(exc.errno, exc.strerror, str(dest)) from None
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return dest


def _swap_contents(new: Path, dest: Path) -> None:
    """dest's entries replaced by new's, name by name (for the folder a process works in, which a rename would
    take away from under it); new is removed."""
    for entry in dest.iterdir():
        if not (new / entry.name).exists():
            entry.unlink()
    for entry in new.iterdir():
        os.replace(entry, dest / entry.name)
    new.rmdir()


TEMP_MARK = ".gankit-"  # in every temporary name gankit makes: .NAME.gankit-PID-XXXXXXXX.tmp
_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.gankit-(?P<pid>\d+)-[a-z0-9_]{8}\.tmp$")


def temp_prefix(name: str) -> str:
    """The start of the name of a temporary file or folder beside `name` (tempfile adds 8 random characters and
    the ".tmp" suffix). It holds gankit's mark and this process's ID: remove_orphans removes only such names,
    and only those of a process that is gone."""
    return f".{name}{TEMP_MARK}{os.getpid()}-"


def remove_orphans(folder: Path, name: str | None = None) -> None:
    """Remove from folder what gankit processes killed while writing left there (the temporaries of `name` only,
    when given): names made by temp_prefix whose process is no longer alive. Nothing else is touched: a user's
    own ".NAME.draft.tmp", or a temporary another gankit process is writing now, stays."""
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return
    for entry in entries:
        match = _TEMP_NAME.match(entry.name)
        if not match or (name is not None and match["name"] != name) or alive(int(match["pid"])):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether a process with this ID exists (ours to signal or not)."""
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # none (or an ID no process can have)
        return False
    except OSError:  # it exists but is not ours to signal
        return True
    return True


def cache_dir() -> Path:
    """Where gankit keeps what it can make again: packed folders, evaluators, real-feature references
    ($GANKIT_CACHE_DIR, default ~/.cache/gankit)."""
    env = os.environ.get("GANKIT_CACHE_DIR")
    return Path(env) if env else Path.home() / ".cache" / "gankit"


# How many bytes gankit reads from one file of each kind, at most: a larger file is not one gankit wrote.
MAX_TEXT_BYTES = 16 << 20  # config.toml, detector.toml, trained_on.json
MAX_IMAGE_BYTES = 256 << 20  # one PNG embedded in a report or read back (a sample grid, reals.png)


def what_is(mode: int) -> str | None:
    """None for a regular file's st_mode; else what it is, in words."""
    if stat.S_ISREG(mode):
        return None
    kinds = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
             (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
    return next((words for test, words in kinds if test(mode)), "not a regular file")


def not_file(path: str | Path, what: str) -> GankitError:
    """The one line for something that is not a regular file where a file belongs."""
    return GankitError(f"{path} is {what}, not a regular file: gankit reads regular files only (move it away, "
                       "or put the file gankit wrote there, and try again)")


def regular(path: str | Path, missing: str | None = None) -> bool:
    """The rule for every file gankit reads: True when path is a regular file (symbolic links followed); False
    when nothing is there, or GankitError(missing) when a message for that is given; anything else (a folder, a
    FIFO, a device, a socket: opening one blocks or streams forever) is one GankitError saying what it is.
    Libraries that take a path (safetensors, torch.load, np.load, Pillow) are given one only after this check;
    gankit's own reads go through open_regular, which checks the opened descriptor as well."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):
        if missing is not None:
            raise GankitError(missing) from None
        return False
    if (what := what_is(mode)) is not None:
        raise not_file(path, what)
    return True


def open_regular(path: str | Path, max_bytes: int | None = None, update: bool = False) -> BinaryIO:
    """A binary file object on a regular file, opened without blocking (O_NONBLOCK: a FIFO put there after any
    check does not hang the open) and checked on the descriptor itself (fstat). Anything else is GankitError
    saying what it is; a file over max_bytes is GankitError naming the limit. A missing file raises
    FileNotFoundError, as open() does. update: opened for reading and writing in place ("rb+")."""
    flags = (os.O_RDWR | os.O_NOFOLLOW) if update else os.O_RDONLY
    fd = os.open(path, flags | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if (what := what_is(info.st_mode)) is not None:
            raise not_file(path, what)
        if max_bytes is not None and info.st_size > max_bytes:
            raise GankitError(f"{path} holds {info.st_size:,} bytes, more than the {max_bytes:,} gankit reads from "
                              "such a file: it is not one gankit wrote (move it away and try again)")
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb+" if update else "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of a regular file of at most max_bytes (see open_regular); a file that grows past the limit
    while it is read is refused as well."""
    with open_regular(path, max_bytes) as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise GankitError(f"{path} holds more than the {max_bytes:,} bytes gankit reads from such a file: it is "
                          "not one gankit wrote (move it away and try again)")
    return data


def read_regular_text(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """read_regular decoded as UTF-8 (UnicodeDecodeError, a ValueError, for anything else)."""
    return read_regular(path, max_bytes).decode("utf-8")


def irregular(folder: Path, names) -> str | None:
    """The first of `names` in folder that exists but is no regular file, said with what it is ("metrics.jsonl
    is a FIFO (named pipe), not a regular file"), or None. Absent names are the caller's to judge (the rule of
    `regular`)."""
    for name in names:
        try:
            what = what_is(os.stat(folder / name).st_mode)
        except (FileNotFoundError, NotADirectoryError):
            continue
        if what is not None:
            return f"{name} is {what}, not a regular file"
    return None


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


def utf8_name(path: str | Path, fix: str = "choose a name in UTF-8") -> None:
    """Refuse, before anything is read or made, a path that is not valid UTF-8 (bytes of another encoding in a
    folder name): safetensors and TensorBoard cannot open a file under it, so a run or a detector there would
    fail half made, or be called corrupt."""
    try:
        os.fsencode(path).decode("utf-8")
    except UnicodeDecodeError:
        raise GankitError(f"{path} is not a valid UTF-8 name, which safetensors and TensorBoard cannot use: {fix} "
                          "(nothing was written)") from None


class Named:
    """A writer kept open (the training log's metrics.jsonl, TensorBoard's SummaryWriter) whose failed calls name
    `path`: an OSError that names no file (what write() raises on a full disk) becomes OSError(errno, strerror,
    path), as atomic_write's do, so that every failed write says which file it was."""

    def __init__(self, target, path: str | Path):
        self._target, self._path = target, str(path)

    def __getattr__(self, name: str):
        attr = getattr(self._target, name)
        if not callable(attr):
            return attr

        def call(*args, **kwargs):
            try:
                return attr(*args, **kwargs)
            except OSError as exc:
                if exc.filename:
                    raise
                raise OSError(exc.errno, exc.strerror or str(exc), self._path) from None

        return call


def own_folder(path: Path) -> None:
    """Before files are written into a run's own subfolder (samples/, tb/): a symbolic link is refused with one
    line, since every file would land in the folder it names (another run's)."""
    if path.is_symlink():
        raise GankitError(f"{path} is a symbolic link: gankit writes a run's files only into folders of its own "
                          "(copy a run with cp -r, not cp -s; nothing was changed)")


def own_in_place(path: Path) -> None:
    """Before a file is changed in place (appended to, cut): a symlink is refused with one line, and a file whose
    inode another name shares (a `cp -al` copy of a run) is first replaced by a copy of its own, so that a write
    never reaches a file through a link. Every other write gankit makes goes to a new file renamed over the old
    one (atomic_write), which replaces a link instead of writing through it."""
    if path.is_symlink():
        raise GankitError(f"{path} is a symbolic link: gankit changes a run's files only where they are regular "
                          "files of their own (copy a run with cp -r, not cp -s)")
    if path.is_file() and path.stat().st_nlink > 1:
        atomic_write(path, lambda tmp: shutil.copyfile(path, tmp))


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
