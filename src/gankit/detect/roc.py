"""The ROC curve figure: one curve per evaluation, the chance diagonal dashed."""

from __future__ import annotations

from typing import Any

from gankit.files import write_to


def plot_roc(curves: list[tuple[str, dict[str, Any]]], out, title: str = "") -> bool:
    """Draw (label, record) pairs, each record holding roc {fpr, tpr} and auc, into out (a path or a binary
    file object) as a PNG; False when there is nothing to draw."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    drawable = [(label, r) for label, r in curves if isinstance(r.get("roc"), dict)
                and isinstance(r["roc"].get("fpr"), list) and isinstance(r["roc"].get("tpr"), list)]
    if not drawable:
        return False
    fig, ax = plt.subplots(figsize=(5.6, 5.2))
    ax.plot([0, 1], [0, 1], color="gray", linestyle="--", linewidth=0.8, label="chance")
    for label, record in drawable:
        auc = record.get("auc")
        auc_text = f" (AUC {auc:.3f})" if isinstance(auc, (int, float)) else ""
        ax.plot(record["roc"]["fpr"], record["roc"]["tpr"], linewidth=1.6, label=f"{label}{auc_text}")
    ax.set_xlim(-0.01, 1)  # a perfect detector's vertical segment at 0 stays visible
    ax.set_ylim(0, 1.01)
    ax.set_xlabel("false positive rate (real images called generated)")
    ax.set_ylabel("true positive rate (generated images caught)")
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right", fontsize=7)
    fig.tight_layout()
    write_to(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))  # a new file: never through a link
    plt.close(fig)
    return True
