"""The ROC curve figure: one curve per evaluation, the chance diagonal dashed."""

from __future__ import annotations

from typing import Any

from gankit.checks import plain
from gankit.files import write_to
from gankit.report.plots import quiet_matplotlib

MAX_POINTS = 100_000  # points of one curve (gankit records at most a few hundred)


def _points(record: Any) -> tuple[list[float], list[float]] | None:
    """(fpr, tpr) of a record (read from metrics.jsonl) when they are two lists of as many rates in [0, 1], else
    None: a curve that is not one is left out of the figure."""
    roc = record.get("roc") if isinstance(record, dict) else None
    fpr, tpr = (roc.get("fpr"), roc.get("tpr")) if isinstance(roc, dict) else (None, None)
    if not (isinstance(fpr, list) and isinstance(tpr, list) and 0 < len(fpr) == len(tpr) <= MAX_POINTS):
        return None
    rates = all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in fpr + tpr)
    return (fpr, tpr) if rates else None


def plot_roc(curves: list[tuple[str, dict[str, Any]]], out, title: str = "") -> bool:
    """Draw (label, record) pairs, each record holding roc {fpr, tpr} and auc, into out (a path or a binary
    file object) as a PNG; False when there is nothing to draw."""
    quiet_matplotlib()  # before matplotlib's import: no word about its cache folder
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawable = [(label, r) for label, r in curves if _points(r) is not None]
    if not drawable:
        return False
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="chance")
    for label, record in drawable:
        auc = record.get("auc")
        auc_text = f" (AUC {auc:.3f})" if isinstance(auc, (int, float)) else ""
        ax.plot(*_points(record), linewidth=1.6, label=plain(f"{label}{auc_text}"))
    ax.set_xlim(-0.01, 1)  # a perfect detector's vertical segment at 0 stays visible
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (real images called generated)")
    ax.set_ylabel("true positive rate (generated images caught)")
    if title:
        ax.set_title(plain(title), fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    write_to(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))  # a new file: never through a link
    plt.close(fig)
    return True
