"""Evaluation records as words and HTML tables: for the CLI, the detector's page and a run's report.

Records come from metrics.jsonl files that anyone may have edited: every value is checked or escaped.
"""

from __future__ import annotations

import html
from typing import Any, Callable

COLUMNS = (("auc", "ROC AUC"), ("ap", "AP"), ("acc", "acc at 0.5"), ("real_acc", "real acc"),
           ("fake_acc", "fake acc"), ("oracle_acc", "oracle acc"))


def cell(value: Any) -> str:
    """A value as safe HTML: floats to 4 significant digits, everything else escaped."""
    return f"{value:.4g}" if isinstance(value, float) else html.escape(str(value))


def describe_fakes(source: dict[str, Any], short: bool = False) -> str:
    """One fakes' provenance in a few words: '/…/runs/x (best, epoch 12, seed 0)', '/…/fakes.npy'; short: the
    last part of the path only (figure legends)."""
    path = str(source.get("path"))
    path = path.rstrip("/").rsplit("/", 1)[-1] if short else path
    if source.get("kind") == "run":
        return f"{path} ({source.get('generator', 'generator')}, epoch {source.get('epoch')}, seed {source.get('seed')})"
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


def evaluation_table(rows: list[dict[str, Any]],
                     first: tuple[str, Callable[[dict[str, Any]], str]] | None = None) -> str:
    """An HTML table of evaluation records: (an optional first column), fakes, test images, counts, numbers."""
    head = ([first[0]] if first else []) + ["fakes", "test images", "n real / fake"] + [t for _, t in COLUMNS]
    lines = ["<tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"]
    for row in rows:
        real = row.get("real") if isinstance(row.get("real"), dict) else {}
        n_fake = sum(f["n"] for f in fakes_of(row) if isinstance(f.get("n"), int))
        values = ([first[1](row)] if first else []) + [fakes_text(row), condition_text(row),
                                                       f"{real.get('n', '')} / {n_fake}"]
        values += [row.get(k, "") for k, _ in COLUMNS]
        lines.append("<tr>" + "".join(f"<td>{cell(v)}</td>" for v in values) + "</tr>")
    return "<table>" + "".join(lines) + "</table>"
