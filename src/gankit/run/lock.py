"""One writer per run directory.

A command that writes a run (train, resume) claims its directory before it does anything else: a new run
creates it with an exclusive mkdir (a default name that another run took in the same second gets a suffix:
-2, -3, ...), and every writer holds an OS lock (flock) on RUN_DIR/.lock for as long as it runs. A second writer
is refused with one line naming the holder's PID; a lock left by a killed process never blocks, because the
operating system drops it with the process. A refused or failed claim leaves nothing behind that it made (the
folder, its parents, the .lock file). Readers (generate, evaluate, report) take no lock and work while a run
trains.
"""

from __future__ import annotations

import fcntl
import os
import stat
import tempfile
import time
from pathlib import Path

from gankit.errors import GankitError
from gankit.files import alive, remove_orphans, temp_prefix, utf8_name

LOCK = ".lock"
NUMBERED = 100  # default names tried per second (runs/NAME, runs/NAME-2, ...) before giving up
PID_WAIT_S = 1.0  # how long a refused writer waits for the holder to write its PID into the lock file


class RunLock:
    """The held lock on a run directory (a context manager; released on exit)."""

    def __init__(self, run_dir: Path, fd: int, created: list[Path], lock_made: bool = False):
        self.run_dir, self.fd, self.created = run_dir, fd, created  # created: folders this claim made
        self.lock_made = lock_made  # this claim created RUN_DIR/.lock

    def discard(self, written: tuple[str, ...]) -> None:
        """A new run that stopped before it trained: remove the files it wrote (then release drops the folder
        if this claim made it)."""
        for name in written:
            (self.run_dir / name).unlink(missing_ok=True)

    def remove_created(self) -> None:
        """A new run that failed before writing anything leaves nothing behind: not the folder (when this claim
        made it) and not the .lock file (when this claim made it in a folder that was there)."""
        if not (self.created or self.lock_made) or not self.run_dir.is_dir():
            return
        if [p.name for p in self.run_dir.iterdir()] not in ([LOCK], []):
            return
        (self.run_dir / LOCK).unlink(missing_ok=True)
        for folder in self.created:  # the run directory first, then the parents made for it
            try:
                folder.rmdir()
            except OSError:
                break

    def release(self) -> None:
        if self.fd < 0:
            return
        self.remove_created()  # while the lock is held: no other writer is past its claim meanwhile
        os.close(self.fd)  # closing the descriptor drops the flock
        self.fd = -1

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(run_dir: str | Path, resume: bool = False, numbered: bool = False) -> RunLock:
    """Take the run directory for writing: a new run's must not exist or be empty; a resumed one must exist.

    numbered: run_dir is a default name, not the user's: when it exists (another run started in the same
    second), the first of NAME-2, NAME-3, ... that this claim can create is taken instead (lock.run_dir).
    """
    run_dir = Path(run_dir)
    utf8_name(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GankitError(f"{run_dir} is a file, not a run directory: choose another --out")
    created: list[Path] = []
    if resume:
        if not run_dir.is_dir():
            raise GankitError(f"run directory not found: {run_dir}")
    else:
        run_dir, created = _make(run_dir, numbered)
    try:
        fd, lock_made = _lock(run_dir)
    except BaseException:
        RunLock(run_dir, -1, created).remove_created()
        raise
    lock = RunLock(run_dir, fd, created, lock_made)
    if not resume and any(p.name != LOCK for p in run_dir.iterdir()):  # filled since _make looked
        if lock_made:
            (run_dir / LOCK).unlink(missing_ok=True)
        lock.release()
        raise _exists(run_dir)
    remove_orphans(run_dir)  # left by a process killed inside an atomic write (gankit's own names only)
    return lock


def _exists(run_dir: Path) -> GankitError:
    return GankitError(f"run directory {run_dir} already exists: continue it with --resume {run_dir} "
                       "or choose another --out")


def _make(run_dir: Path, numbered: bool) -> tuple[Path, list[Path]]:
    """Create a new run's folder with an exclusive mkdir: (the folder, the folders this made). An existing
    folder is refused unless it is empty (checked before anything is made in it); a default name taken by
    another run gets the next free suffix."""
    missing = [p for p in run_dir.parents if not p.exists()]
    run_dir.parent.mkdir(parents=True, exist_ok=True)
    for n in range(1, NUMBERED + 1 if numbered else 2):
        name = run_dir if n == 1 else run_dir.with_name(f"{run_dir.name}-{n}")
        try:
            name.mkdir()
            return name, [name, *missing]
        except FileExistsError:
            if numbered:
                continue
            if name.is_dir() and any(p.name != LOCK for p in name.iterdir()):
                raise _exists(name) from None  # refused before a .lock is made in the user's folder
            return name, []  # an empty folder (or one a killed start left with its .lock) is taken up
    raise GankitError(f"{NUMBERED} runs named {run_dir.name}[-N] already exist: choose a name with --out")


def _lock(run_dir: Path) -> tuple[int, bool]:
    """flock RUN_DIR/.lock without waiting; the file then names this process. Returns (fd, whether this made
    the file). A lock file that was removed or replaced while this waited is opened again."""
    path = run_dir / LOCK
    for _ in range(10):
        fd, made = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise GankitError(f"{run_dir} is being written by another gankit process (PID {holder}): wait for it "
                              "to finish or stop it; readers (generate, evaluate, report) work meanwhile") from None
        try:
            same = os.path.samestat(os.fstat(fd), os.lstat(path))
        except FileNotFoundError:
            same = False
        if same and os.fstat(fd).st_nlink > 1:  # a hard link (a `cp -al` copy of a run, a user's file): the PID
            _own_lock(path)  # must not land in the other name's file; a new one is put in its place, then locked
            os.close(fd)
            continue
        if same:  # the file at the path is the one locked (a releasing claim may have unlinked it meanwhile)
            pid = f"{os.getpid()}\n".encode()
            os.pwrite(fd, pid, 0)  # then cut: a reader meanwhile sees a whole PID on the first line
            os.ftruncate(fd, len(pid))
            return fd, made
        os.close(fd)
    raise GankitError(f"{path} keeps being replaced by another process: stop it and try again")


def _own_lock(path: Path) -> None:
    """Replace RUN_DIR/.lock, whose inode another name shares, by a new empty file of its own (renamed over it:
    the other name keeps its file untouched). Called while the shared one is locked, so no claim of this run
    holds it."""
    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(LOCK), suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _open_lock(path: Path) -> tuple[int, bool]:
    """RUN_DIR/.lock opened for writing, made when missing (never through a link): (fd, whether this made it)."""
    try:  # never through a link: the PID written later would land in whatever file it points to
        try:
            fd, made = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644), True
        except FileExistsError:
            fd, made = os.open(path, os.O_RDWR | os.O_NOFOLLOW), False
    except OSError as exc:
        if path.is_symlink():
            raise GankitError(f"{path} is a link, not gankit's lock file: remove it and try again") from None
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GankitError(f"{path} is not a regular file: remove it and try again")
    return fd, made


def _holder(fd: int) -> str:
    """The PID the holder of the lock wrote: waited for while it is about to write it (the file is empty, or
    still names a process that has ended)."""
    deadline = time.monotonic() + PID_WAIT_S
    while True:
        text = os.pread(fd, 32, 0).decode(errors="replace").split("\n", 1)[0].strip()
        if text.isdigit() and int(text) > 0 and alive(int(text)):
            return text
        if time.monotonic() > deadline:
            return text or "unknown"
        time.sleep(0.02)

