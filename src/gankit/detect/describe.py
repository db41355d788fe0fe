"""Evaluation records in words: for the CLI, the detector's page and a run's report (the HTML table of them is
gankit.report.detector_page.evaluation_table).

Records come from metrics.jsonl files that anyone may have edited: every value is checked or escaped.
"""

from __future__ import annotations

from typing import Any


def describe_fakes(source: dict[str, Any], short: bool = False) -> str:
    """One fakes' provenance in a few words: '/…/runs/x (best, epoch 12, seed 0)', '/…/fakes.npy'; short: the
    last part of the path only (figure legends)."""
    path = str(source.get("path"))
    path = path.rstrip("/").rsplit("/", 1)[-1] if short else path
    if source.get("kind") == "run":
        which = source.get("generator", "generator")
        return f"{path} ({which}, epoch {source.get('epoch')}, seed {source.get('seed')})"
    return path


def condition(jpeg: int | None, blur: float | None, lead: str = "") -> str:
    """'blur 1, jpeg 75' (what the test images went through, in that order), or ''."""
    parts = ([f"blur {blur:g}"] if blur else []) + ([f"jpeg {jpeg}"] if jpeg is not None else [])
    return lead + ", ".join(parts) if parts else ""


def fakes_of(row: dict[str, Any]) -> list[dict[str, Any]]:
    fakes = row.get("fakes")
    return [f for f in fakes if isinstance(f, dict)] if isinstance(fakes, list) else []


def fakes_text(row: dict[str, Any], short: bool = False) -> str:
    return "; ".join(describe_fakes(f, short) for f in fakes_of(row))


def condition_text(row: dict[str, Any]) -> str:
    jpeg = row.get("jpeg") if isinstance(row.get("jpeg"), int) else None
    blur = row.get("blur") if isinstance(row.get("blur"), (int, float)) else None
    return condition(jpeg, blur) or "clean"
