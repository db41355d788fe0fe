"""The width multipliers (`g_width`, `d_width`) as every architecture applies them."""

from __future__ import annotations


def scaled(widths: tuple[int, ...], factor: float) -> list[int]:
    """Channel (or unit) counts multiplied by a width factor, rounded, at least 1 each."""
    return [max(1, round(w * factor)) for w in widths]
