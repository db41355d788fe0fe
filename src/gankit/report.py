"""`gankit report RUN_DIR`: one self-contained HTML page (images embedded as data URIs) about a run.

Loss curves, D(x)/D(G(z)), metric curves against the real-vs-real floor, the best and the last sample grids,
the health findings, the latest evaluation, and the config. Everything comes from the run directory.
"""

from __future__ import annotations

import base64
import html
import io
from pathlib import Path

from . import checkpoint as ckpt
from . import metrics as metrics_mod
from .detect.store import evaluations_of_run
from .detect.tables import evaluation_table
from .losses import LOSSES
from .plots import plot_loss_curves, plot_metric_curves, read_metrics

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.15em; margin-top: 1.6em; border-bottom: 1px solid #ddd; }
img { max-width: 100%; } .grids { display: flex; gap: 2em; flex-wrap: wrap; }
.grids figure { margin: 0; } .grids img { width: 360px; image-rendering: pixelated; border: 1px solid #ccc; }
table { border-collapse: collapse; } td, th { padding: 2px 12px; text-align: right; border-bottom: 1px solid #eee; }
td:first-child, th:first-child { text-align: left; } .warn { color: #a40; } .ok { color: #070; }
pre { background: #f6f6f6; padding: 0.8em; font-size: 0.85em; }
"""


def img_tag(data: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'


def png_of(draw) -> bytes | None:
    buffer = io.BytesIO()
    return buffer.getvalue() if draw(buffer) else None


def _text(value) -> str:
    """Any value read from a file, as safe HTML: numbers formatted, everything else escaped."""
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _metric_table(row: dict) -> str:
    floor = row.get("floor") if isinstance(row.get("floor"), dict) else {}
    cells = ["<tr><th>metric</th><th>run</th><th>real vs real</th></tr>"]
    for key, (label, _) in metrics_mod.METRICS.items():
        if key in row:
            cells.append(f"<tr><td>{label}</td><td>{_text(row[key])}</td><td>{_text(floor.get(key, ''))}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def _number(value, default: float = 0.0) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    cfg = ckpt.load_run_config(run_dir)
    log = run_dir / ckpt.METRICS
    parts = [f"<h1>gankit run: {html.escape(run_dir.name)}</h1>",
             f"<p>{html.escape(cfg.preset)} preset, {html.escape(cfg.model)} model, {html.escape(cfg.loss)} loss, "
             f"on {html.escape(cfg.data)} ({cfg.channels}x{cfg.image_size}x{cfg.image_size}).</p>"]

    epochs = read_metrics(log, kind="epoch")
    if epochs:
        seconds = sum(_number(r.get("seconds")) for r in epochs)
        parts.append(f"<p>{len(epochs)} epochs, {_text(epochs[-1].get('step'))} steps, {seconds:.0f} s of training, "
                     f"last epoch {_number(epochs[-1].get('images_per_s')):.0f} images/s.</p>")

    parts.append("<h2>Losses and discriminator outputs</h2>")
    probability = LOSSES[cfg.loss].probability
    curves = png_of(lambda out: plot_loss_curves(log, out, probability=probability) is not None)
    parts.append(img_tag(curves, "loss curves") if curves else "<p>No training steps logged yet.</p>")

    parts.append("<h2>Quality during training</h2>")
    quality = png_of(lambda out: plot_metric_curves(log, out))
    parts.append(img_tag(quality, "metric curves") if quality else "<p>No evaluations in this run.</p>")
    evals = read_metrics(log, kind="eval")
    if evals:
        last = evals[-1]
        parts.append(f"<p>Latest evaluation ({_text(last.get('source'))}, epoch {_text(last.get('epoch'))}, "
                     f"{_text(last.get('n'))} samples):</p>" + _metric_table(last))

    parts.append("<h2>Samples (fixed noise)</h2><div class='grids'>")
    grids = sorted((run_dir / ckpt.SAMPLES).glob("epoch_*.png"))
    best_epoch = ckpt.export_info(run_dir, ckpt.BEST).get("epoch") if (run_dir / ckpt.BEST).is_file() else None
    shown = []
    if isinstance(best_epoch, int) and best_epoch > 0:
        best = run_dir / ckpt.SAMPLES / f"epoch_{best_epoch:03d}.png"
        if best.is_file():
            shown.append((best, f"best FD: epoch {best_epoch}"))
    if grids:
        shown.append((grids[-1], f"last: epoch {int(grids[-1].stem.split('_')[1])}"))
    for path, caption in shown:
        parts.append(f"<figure>{img_tag(path.read_bytes(), caption)}<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</div>" if shown else "<p>No sample grids yet.</p></div>")

    parts.append("<h2>Health</h2>")
    findings = read_metrics(log, kind="health")
    if findings:
        parts.append("<ul>" + "".join(
            f"<li class='warn'>{_text(f.get('message'))} (epoch {_text(f.get('epoch'))}, step {_text(f.get('step'))}): "
            f"{_text(f.get('remedy', ''))}</li>" for f in findings) + "</ul>")
    else:
        parts.append("<p class='ok'>No problems found: no mode collapse, no runaway discriminator, no divergence."
                     "</p>")

    parts.append(_detectability(run_dir))
    parts.append("<h2>Config</h2><pre>" + html.escape((run_dir / ckpt.CONFIG).read_text()) + "</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>gankit report: "
            f"{html.escape(run_dir.name)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    out = run_dir / "report.html"
    ckpt.atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out


def _detectability(run_dir: Path) -> str:
    """How detectable the run's fakes are: every evaluation of them by a detector beside the run (gankit detect
    eval records where its fakes came from; nothing is written to the run). Empty when there is none."""
    found = list(evaluations_of_run(run_dir))
    if not found:
        return ""
    names = {id(row): f"{folder.name} ({config.get('method')})" for folder, config, row in found}
    return ("<h2>Detectability</h2><p>Detectors beside this run that were evaluated on its fakes (ROC AUC 0.5: "
            "the detector cannot tell them from real images; 1: it always can):</p>"
            + evaluation_table([row for _, _, row in found], ("detector", lambda row: names[id(row)])))
