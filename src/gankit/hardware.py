"""What this machine's CPU can do, read from the machine, never assumed (the host changes between days)."""

from __future__ import annotations

from pathlib import Path

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


__all__ = ["BF16_FLAGS", "cpu_flags", "native_bf16"]
