"""One writer per run directory.

A command that writes a run (train, resume) claims its directory before it does anything else: a new run
creates it with an exclusive mkdir, and every writer holds an OS lock (flock) on RUN_DIR/.lock for as long as
it runs. A second writer is refused with one line naming the holder's PID; a lock left by a killed process
never blocks, because the operating system drops it with the process. Readers (generate, evaluate, report)
take no lock and work while a run trains.
"""

from __future__ import annotations

import fcntl
import os
import stat
from pathlib import Path

from gankit.errors import GankitError

LOCK = ".lock"


class RunLock:
    """The held lock on a run directory (a context manager; released on exit)."""

    def __init__(self, run_dir: Path, fd: int, created: list[Path]):
        self.run_dir, self.fd, self.created = run_dir, fd, created  # created: folders this claim made

    def discard(self, written: tuple[str, ...]) -> None:
        """A new run that stopped before it trained: remove the files it wrote (then release drops the folder
        if this claim made it)."""
        for name in written:
            (self.run_dir / name).unlink(missing_ok=True)

    def remove_created(self) -> None:
        """A new run that failed before writing anything leaves no folder behind."""
        if self.created and [p.name for p in self.run_dir.iterdir()] in ([LOCK], []):
            (self.run_dir / LOCK).unlink(missing_ok=True)
            for folder in self.created:  # the run directory first, then the parents made for it
                try:
                    folder.rmdir()
                except OSError:
                    break

    def release(self) -> None:
        if self.fd < 0:
            return
        self.remove_created()
        os.close(self.fd)  # closing the descriptor drops the flock
        self.fd = -1

    def __enter__(self) -> "RunLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def claim(run_dir: str | Path, resume: bool = False) -> RunLock:
    """Take the run directory for writing: a new run's must not exist or be empty; a resumed one must exist."""
    run_dir = Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise GankitError(f"{run_dir} is a file, not a run directory: choose another --out")
    created: list[Path] = []
    if resume:
        if not run_dir.is_dir():
            raise GankitError(f"run directory not found: {run_dir}")
    else:
        missing = [p for p in run_dir.parents if not p.exists()]
        run_dir.parent.mkdir(parents=True, exist_ok=True)
        try:
            run_dir.mkdir()
            created = [run_dir, *missing]
        except FileExistsError:
            pass
    try:
        fd = _lock(run_dir)
    except BaseException:
        RunLock(run_dir, -1, created).remove_created()
        raise
    lock = RunLock(run_dir, fd, created)
    if not resume and any(p.name != LOCK for p in run_dir.iterdir()):
        lock.release()
        raise GankitError(f"run directory {run_dir} already exists: continue it with --resume {run_dir} "
                          "or choose another --out")
    for orphan in run_dir.glob(".*.tmp"):  # left by a process killed inside an atomic write
        orphan.unlink(missing_ok=True)
    return lock


def _lock(run_dir: Path) -> int:
    """flock RUN_DIR/.lock without waiting; the file then names this process."""
    path = run_dir / LOCK
    try:  # never through a link: the PID written below would land in whatever file it points to
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise GankitError(f"{path} is a link, not gankit's lock file: remove it and try again") from None
        raise OSError(exc.errno, exc.strerror, str(path)) from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise GankitError(f"{path} is not a regular file: remove it and try again")
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise GankitError(f"{run_dir} is being written by another gankit process (PID {holder}): wait for it "
                          "to finish or stop it; readers (generate, evaluate, report) work meanwhile") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd

