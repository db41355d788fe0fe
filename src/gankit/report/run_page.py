"""`gankit report RUN_DIR`: one self-contained HTML page (images embedded as data URIs) about a run.

Loss curves, D(x)/D(G(z)), metric curves against the real-vs-real floor, the best and the last sample grids,
the health findings, the latest evaluation, and the config. Everything comes from the run directory.
"""

from __future__ import annotations

import html
from pathlib import Path

from gankit.detect.store import evaluations_of_run
from gankit.files import MAX_IMAGE_BYTES, atomic_write, read_regular, read_regular_text, real_or, regular
from gankit.quality import metrics
from gankit.report.detector_page import evaluation_table
from gankit.report.markup import STYLE, img_tag, png_of, text
from gankit.report.plots import plot_loss_curves, plot_metric_curves, read_metrics
from gankit.run import generator_file, layout
from gankit.run.metrics_log import MetricsFile
from gankit.training.losses import LOSSES


def _metric_table(row: dict) -> str:
    floor = row.get("floor") if isinstance(row.get("floor"), dict) else {}
    cells = ["<tr><th>metric</th><th>run</th><th>real vs real</th></tr>"]
    for key, (label, _) in metrics.LABELS.items():
        if key in row:
            cells.append(f"<tr><td>{label}</td><td>{text(row[key])}</td><td>{text(floor.get(key, ''))}</td></tr>")
    return "<table>" + "".join(cells) + "</table>"


def write_report(run_dir: str | Path) -> Path:
    run_dir = Path(run_dir)
    cfg = generator_file.load_run_config(run_dir)
    log = MetricsFile(run_dir / layout.METRICS).read()  # one pass over the file for every figure and table
    parts = [f"<h1>gankit run: {html.escape(run_dir.name)}</h1>",
             f"<p>{html.escape(cfg.preset)} preset, {html.escape(cfg.model)} model, {html.escape(cfg.loss)} loss, "
             f"on {html.escape(cfg.data)} ({cfg.channels}x{cfg.image_size}x{cfg.image_size}).</p>"]

    epochs = read_metrics(log, kind="epoch")
    if epochs:
        seconds = sum(real_or(r.get("seconds"), 0.0) for r in epochs)
        parts.append(f"<p>{len(epochs)} epochs, {text(epochs[-1].get('step'))} steps, {seconds:.0f} s of training, "
                     f"last epoch {real_or(epochs[-1].get('images_per_s'), 0.0):.0f} images/s.</p>")

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
        parts.append(f"<p>Latest evaluation ({text(last.get('source'))}, epoch {text(last.get('epoch'))}, "
                     f"{text(last.get('n'))} samples):</p>" + _metric_table(last))

    parts.append("<h2>Samples (fixed noise) beside real images</h2><div class='grids'>")
    grids = [p for p in layout.epoch_grids(run_dir) if regular(p)]
    has_best = regular(run_dir / layout.BEST)
    best_epoch = generator_file.export_info(run_dir, layout.BEST).get("epoch") if has_best else None
    shown = []
    if isinstance(best_epoch, int) and best_epoch > 0:
        best = run_dir / layout.SAMPLES / layout.epoch_grid(best_epoch)
        if regular(best):
            shown.append((best, f"best FD: epoch {best_epoch}"))
    if grids:
        shown.append((grids[-1], f"last: epoch {layout.grid_epoch(grids[-1])}"))
    if regular(run_dir / layout.REALS):
        shown.append((run_dir / layout.REALS, "real training images"))
    for path, caption in shown:
        parts.append(f"<figure>{img_tag(read_regular(path, MAX_IMAGE_BYTES), caption)}"
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    parts.append("</div>" if shown else "<p>No sample grids yet.</p></div>")
    if regular(run_dir / layout.COPIES):
        parts.append("<h2>Is it copying?</h2><p>The fakes of the last <code>gankit evaluate</code> that lie closest "
                     "to a training image (in the evaluator's features), each beside that image; the copy rate is "
                     "in the evaluation's table.</p><div class='grids'><figure>"
                     + img_tag(read_regular(run_dir / layout.COPIES, MAX_IMAGE_BYTES),
                               "fakes beside their nearest training images")
                     + "</figure></div>")

    parts.append("<h2>Health</h2>")
    findings = read_metrics(log, kind="health")
    if findings:
        parts.append("<ul>" + "".join(
            f"<li class='warn'>{text(f.get('message'))} (epoch {text(f.get('epoch'))}, step {text(f.get('step'))}): "
            f"{text(f.get('remedy', ''))}</li>" for f in findings) + "</ul>")
    else:
        parts.append("<p class='ok'>No problems found: no mode collapse, no runaway discriminator, no divergence."
                     "</p>")

    parts.append(_detectability(run_dir))
    parts.append("<h2>Config</h2><pre>" + html.escape(read_regular_text(run_dir / layout.CONFIG)) + "</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>gankit report: "
            f"{html.escape(run_dir.name)}</title><style>{STYLE}</style></head><body>"
            + "\n".join(parts) + "</body></html>")
    out = run_dir / layout.REPORT
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
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
