"""Worker processes for work that splits into independent tasks (decoding a folder's files): results in order,
and a Ctrl-C or a failure of whoever consumes them ends the workers at once.

A worker ignores SIGINT: a Ctrl-C at the terminal reaches every process of the group, and a worker that died
with KeyboardInterrupt half way through a task would break the pool (its executor then hangs on shutdown or
swallows the interrupt). The process that started the pool takes the Ctrl-C, cancels what has not started,
ends the workers and passes the KeyboardInterrupt on. On Linux a worker also dies with that process, even when
it is killed outright (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Callable, Iterator, TypeVar

import torch

T = TypeVar("T")
R = TypeVar("R")


def in_order(work: Callable[[T], R], tasks: list[T]) -> Iterator[R]:
    """work(task) for each task, in order: in worker processes (one per CPU, at most one per task), or in this
    process when there would be fewer than two. `work` must be a module-level function (it is sent by name)."""
    count = min(len(os.sched_getaffinity(0)), len(tasks))
    if count < 2:
        for task in tasks:
            yield work(task)
        return
    # fork: the workers start at once with gankit imported (spawn would import torch again in each)
    context = multiprocessing.get_context("fork" if sys.platform.startswith("linux") else None)
    pool = ProcessPoolExecutor(count, mp_context=context, initializer=_worker_start, initargs=(os.getpid(),))
    try:
        # SIGINT is blocked while the workers are forked (on the first submit), so that each starts with it
        # blocked and then ignores it; a Ctrl-C that came meanwhile is raised here once it is unblocked
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            results = pool.map(work, tasks)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
        yield from results
    except BaseException:  # a Ctrl-C, a failed task, or the consumer's own failure (GeneratorExit)
        _stop(pool)
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor) -> None:
    """End a pool now: cancel what has not started and end the workers (their results are not wanted)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public handle on the workers
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.terminate()
    for process in processes:
        process.join(timeout=5)


def _worker_start(parent: int) -> None:
    torch.set_num_threads(1)  # one thread per process: the processes are the parallelism
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C is the starting process's to handle
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    _die_with(parent)


def _die_with(parent: int) -> None:
    """Linux: this worker is killed when the process that started it dies, even by SIGKILL (which leaves no
    chance to stop its pool): PR_SET_PDEATHSIG. Elsewhere the pool's own shutdown is all there is."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG = 1
    if os.getppid() != parent:  # the parent died before the line above took effect
        os._exit(1)
