"""Matplotlib figures read from metrics.jsonl, so no TensorBoard is needed to see a run, and the run's progress
GIF made from its per-epoch sample grids."""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np

from gankit import console, images
from gankit.checks import plain
from gankit.errors import GankitError
from gankit.files import atomic_write, cache_dir, real_or, write_to
from gankit.run import layout
from gankit.run.metrics_log import MetricsFile


def read_metrics(source: str | Path | list[dict], kind: str = "train") -> list[dict]:
    """The records of one kind in a metrics.jsonl (see gankit.run.metrics_log), or among records already read
    from one (a report reads the file once for all its figures and tables)."""
    if isinstance(source, list):
        return [r for r in source if r.get("kind") == kind]
    return MetricsFile(source).read(kind)


def number(record: dict, key: str) -> float:
    """record[key] as a float; NaN (not plotted) when it is missing or not a number."""
    return real_or(record.get(key), np.nan)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (window clipped to the series length)."""
    window = max(1, min(window, len(values)))
    kernel = np.ones(window) / window
    padded = np.concatenate([np.full(window - 1, values[0]), values])
    return np.convolve(padded, kernel, mode="valid")


def quiet_matplotlib() -> None:
    """Call before matplotlib is imported (every figure does): when its config and cache folder cannot be made
    (an unwritable HOME) and MPLCONFIGDIR is unset, one under gankit's cache or a temporary one is used instead,
    so that matplotlib says nothing about it; its logger says errors only."""
    logging.getLogger("matplotlib").setLevel(logging.ERROR)
    if "matplotlib" in sys.modules or os.environ.get("MPLCONFIGDIR"):
        return
    home = Path.home()
    defaults = [Path(os.environ.get(xdg) or home / sub) / "matplotlib"
                for xdg, sub in (("XDG_CONFIG_HOME", ".config"), ("XDG_CACHE_HOME", ".cache"))]
    if all(_writable(p) for p in defaults):
        return
    own = cache_dir() / "matplotlib"
    if not _writable(own):
        own = Path(tempfile.mkdtemp(prefix="gankit-matplotlib-"))
        atexit.register(shutil.rmtree, own, ignore_errors=True)
    os.environ["MPLCONFIGDIR"] = str(own)


def _writable(folder: Path) -> bool:
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


def _figure(width: float, height: float):
    """A matplotlib figure rendered by Agg when saved, without pyplot (its import, backend and figure registry)."""
    quiet_matplotlib()
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plot_loss_curves(metrics_path: str | Path | list[dict], out, probability: bool = True) -> Path | None:
    """Two panels: loss_D and loss_G; D(x) and D(G(z)). Raw values faint, moving average bold.
    `out` is a path or a binary file object; probability=False for losses whose D scores are raw outputs."""
    rows = read_metrics(metrics_path)
    if not rows:
        return None
    steps = np.array([number(r, "step") for r in rows])
    window = max(1, len(rows) // 50)
    fig = _figure(12, 4.2)
    axes = fig.subplots(1, 2)
    for ax, keys, title in ((axes[0], ("loss_D", "loss_G"), "losses"),
                            (axes[1], ("D(x)", "D(G(z))"),
                             "discriminator outputs (probability)" if probability else "discriminator scores")):
        for key, color in zip(keys, ("tab:blue", "tab:orange")):
            values = np.array([number(r, key) for r in rows])
            ax.plot(steps, values, color=color, alpha=0.25, linewidth=0.8)
            ax.plot(steps, smooth(values, window), color=color, linewidth=1.8, label=key)
        ax.set_title(title)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
    if probability:
        axes[1].set_ylim(0, 1)
        axes[1].axhline(0.5, color="gray", linestyle="--", linewidth=0.8)
    fig.tight_layout()
    write_to(out, lambda tmp: fig.savefig(tmp, dpi=100, format="png"))  # a new file: never through a link
    return out


METRIC_PANELS = (("fd", "FD (lower is better)"), ("precision", "precision"), ("recall", "recall"),
                 ("classes_covered", "classes holding >= 5% of the fakes"))


def latest_feature_space(evals: list[dict]) -> list[dict]:
    """The trailing evaluations measured by the same evaluator as the last one: values under different
    evaluators are in different feature spaces and do not belong on one curve."""
    start = len(evals) - 1
    while start > 0 and evals[start - 1].get("evaluator") == evals[-1].get("evaluator"):
        start -= 1
    return evals[max(start, 0):]


def plot_metric_curves(metrics_path: str | Path | list[dict], out) -> bool:
    """FD, precision, recall and class coverage per evaluation during training, with the real-vs-real
    floor dashed. `out` is a path or a binary file object. False when the run has no evaluations."""
    evals = [r for r in read_metrics(metrics_path, kind="eval") if r.get("source") == "train"]
    if not evals:
        return False
    rows = latest_feature_space(evals)  # a run resumed under another evaluator is drawn from that change on
    epochs = [number(r, "epoch") for r in rows]
    panels = [(k, t) for k, t in METRIC_PANELS if k in rows[-1]]
    fig = _figure(4 * len(panels), 3.4)
    axes = fig.subplots(1, len(panels), squeeze=False)
    for ax, (key, title) in zip(axes[0], panels):
        values = [number(r, key) for r in rows]
        ax.plot(epochs, values, marker="o", color="tab:blue", label="run")
        floor = number(rows[-1].get("floor") if isinstance(rows[-1].get("floor"), dict) else {}, key)
        if np.isfinite(floor):
            ax.axhline(floor, color="gray", linestyle="--", linewidth=1, label="real vs real")
        shown = [v for v in values + [floor] if np.isfinite(v)]
        if key == "fd" and shown and min(shown) > 0:  # a log scale only holds positive values (else linear)
            ax.set_yscale("log")
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0][0].legend()
    if len(rows) < len(evals):
        fig.suptitle(plain(f"measured by the evaluator in use since epoch {rows[0].get('epoch')} (earlier values "
                           "are in another feature space)"), fontsize=9)
    fig.tight_layout()
    write_to(out, lambda tmp: fig.savefig(tmp, dpi=90, format="png"))
    return True


def write_progress_gif(run_dir: Path) -> Path | None:
    """RUN_DIR/progress.gif: the per-epoch fixed-noise grids as an animation (the last one held longer). A file
    that is not one of this run's grids (a crafted or damaged PNG, one of another size) is left out, with a note."""
    paths = layout.epoch_grids(run_dir)
    frames, skipped = [], []
    for path in reversed(paths):  # the newest grid first: the others are drawn at its size
        try:  # grids saved before save_grid enlarged them (a resumed run) are enlarged to the newest's width
            frame = images.read_png(path)
            frame = images.upscale(frame, frames[0].shape[-1]) if frames else frame
        except GankitError:  # too many pixels, not a PNG
            frame = None
        if frame is None or (frames and frame.shape != frames[0].shape):
            skipped.append(path.name)
        else:
            frames.append(frame)
    if skipped:
        console.note(f"{layout.PROGRESS_GIF} leaves out {', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}: "
                     "not a grid of this run's size")
    if not frames:
        return None
    frames = frames[::-1] + [frames[0]] * 4
    out = run_dir / layout.PROGRESS_GIF
    atomic_write(out, lambda tmp: images.save_gif(frames, tmp, ms_per_frame=300))
    return out
