"""Where this process computes: its device, its place among torchrun's processes, what its CPU can do.

- `resolve_device`: "auto" -> cuda when there is one, else cpu.
- `World` (`from_env`): this process's rank among the training processes (rank 0 writes, prints, evaluates).
- `Rows`: this rank's rows of a global batch; every draw is made for the whole batch and sliced, so N processes
  see what one would (gankit.training.distributed has the rest of torchrun's side).
- `native_bf16`: whether the CPU computes bf16 in hardware, read from the machine, never assumed (the host
  changes between days).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from gankit.errors import GankitError

BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # bf16 dot products in hardware (Zen 4, Sapphire Rapids and later)


def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The first processor's feature flags (an empty set where /proc/cpuinfo is not readable)."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        return set()
    line = next((row for row in text.splitlines() if row.startswith("flags")), "")
    return set(line.partition(":")[2].split())


def native_bf16(cpuinfo: str | Path = "/proc/cpuinfo") -> bool:
    """Whether this CPU computes bf16 in hardware (AVX512-BF16 or AMX). Without it, torch's bf16 matmuls are
    emulated: measured 30x slower than fp32 on an AVX2-only EPYC (BENCHMARKS.md)."""
    return any(flag in cpu_flags(cpuinfo) for flag in BF16_FLAGS)


def resolve_device(name: str) -> torch.device:
    """auto -> cuda when there is one, else cpu; a CUDA device asked for where there is none is one line."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"device '{name}' requested but CUDA is not available here: use --device cpu or auto")
    return torch.device(name)


@dataclass(frozen=True)
class World:
    """This process's place among the training processes."""

    rank: int = 0
    local_rank: int = 0
    size: int = 1

    @property
    def main(self) -> bool:
        """The process that writes the run directory, prints progress and evaluates."""
        return self.rank == 0

    @property
    def several(self) -> bool:
        return self.size > 1


def from_env() -> World:
    """The world torchrun describes in the environment, or a world of one."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", str(rank)))
        size = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError:
        raise GankitError("RANK, LOCAL_RANK and WORLD_SIZE must be whole numbers (as torchrun sets them)") from None
    if size < 1 or not 0 <= rank < size or local < 0:
        raise GankitError(f"RANK {rank} and WORLD_SIZE {size} do not describe a process of a group")
    return World(rank, local, size)


@dataclass(frozen=True)
class Rows:
    """This rank's rows of a global batch of `total` rows: a random draw is made for all of them (the same on
    every rank, from the shared generator) and sliced, so N ranks together see what one process would."""

    total: int
    start: int = 0
    stop: int | None = None

    @classmethod
    def of(cls, world: World, total: int) -> "Rows":
        per = total // world.size
        return cls(total, world.rank * per, (world.rank + 1) * per)

    @property
    def count(self) -> int:
        return (self.total if self.stop is None else self.stop) - self.start

    def take(self, full: torch.Tensor) -> torch.Tensor:
        return full[self.start:self.stop]

    def rand(self, *shape: int, generator=None, device=None, dtype=None) -> torch.Tensor:
        return self.take(torch.rand(self.total, *shape, generator=generator, device=device, dtype=dtype))

    def randn(self, *shape: int, generator=None, device=None) -> torch.Tensor:
        return self.take(torch.randn(self.total, *shape, generator=generator, device=device))

    def randint(self, low: int, high: int, *shape: int, generator=None, device=None) -> torch.Tensor:
        return self.take(torch.randint(low, high, (self.total, *shape), generator=generator, device=device))
