"""`gankit report DETECTOR_DIR`: one self-contained page about a detector (DETECTOR_DIR/report.html), and the
table of detector evaluations that a run's page shows too.

What it was trained on, its validation numbers, the ROC curves of its evaluations in one figure, a table of every
evaluation (fakes, degradation, AUC, AP, accuracies) and its detector.toml. Everything comes from the folder.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any, Callable

from gankit.detect import store
from gankit.detect.describe import condition_text, describe_fakes, fakes_of, fakes_text
from gankit.detect.roc import plot_roc
from gankit.files import atomic_write, read_regular_text
from gankit.report.markup import STYLE, img_tag, png_of, text
from gankit.run import layout

COLUMNS = (("auc", "ROC AUC"), ("ap", "AP"), ("acc", "acc at 0.5"), ("real_acc", "real acc"),
           ("fake_acc", "fake acc"), ("oracle_acc", "oracle acc"))
MAX_CURVES = 12  # the latest evaluations drawn in the ROC figure


def write_detector_report(detector_dir: str | Path) -> Path:
    """Write DETECTOR_DIR/report.html and return its path."""
    stored = store.read(detector_dir)
    store.check_writable(stored.path)
    path, config, trained_on = stored.path, stored.config, stored.trained_on
    rows = store.evaluations(path)
    real = trained_on.get("real") if isinstance(trained_on.get("real"), dict) else {}
    parts = [f"<h1>gankit detector: {html.escape(path.name)}</h1>",
             f"<p>{html.escape(str(config.get('method')))} detector of {config.get('channels')}-channel "
             f"{config.get('image_size')}x{config.get('image_size')} images.</p>"]
    if trained_on.get("trained") is False:
        parts.append(f"<p>The discriminator of {text(trained_on.get('run'))} at epoch {text(trained_on.get('epoch'))}"
                     f": nothing trained. The {text(real.get('n_used'))} real images it trained on "
                     f"({text(real.get('source'))}) are left out of its evaluations.</p>")
    else:
        fakes = "; ".join(describe_fakes(f) for f in trained_on.get("fakes", []) if isinstance(f, dict))
        val = trained_on.get("validation") if isinstance(trained_on.get("validation"), dict) else {}
        parts.append(f"<p>Trained on {text(real.get('n_used'))} real images of {text(real.get('source'))} "
                     f"({text(real.get('n_held_out'))} held out for evaluation) and fakes from {html.escape(fakes)}, "
                     f"in {text(trained_on.get('seconds'))} s. Validation: ROC AUC {text(val.get('auc'))}, "
                     f"accuracy at 0.5 {text(val.get('acc'))}.</p>")
    parts.append("<h2>Evaluations</h2>")
    if rows:
        curves = [(f"{fakes_text(r, short=True)}, {condition_text(r)}", r) for r in rows[-MAX_CURVES:]]
        figure = png_of(lambda out: plot_roc(curves, out, f"{path.name} ({config.get('method')})"))
        parts.append((img_tag(figure, "ROC curves") if figure else "") + evaluation_table(rows))
        parts.append("<p>Accuracy at 0.5 uses the detector's own threshold: high AUC with low accuracy means the "
                     "scores still rank real below fake but the threshold did not transfer to these images. The "
                     "oracle accuracy picks the best threshold on the same labels: an upper bound.</p>")
    else:
        parts.append(f"<p>Not evaluated yet: <code>gankit detect eval {html.escape(str(path))} --real SOURCE "
                     "--fake FAKES</code>.</p>")
    parts.append("<h2>What it was trained on</h2><pre>" + html.escape(json.dumps(trained_on, indent=2)) + "</pre>")
    config_text = read_regular_text(path / layout.DETECTOR_CONFIG)
    parts.append("<h2>Config</h2><pre>" + html.escape(config_text) + "</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>gankit detector: "
            f"{html.escape(path.name)}</title><style>{STYLE}</style></head><body>" + "\n".join(parts)
            + "</body></html>")
    out = path / layout.REPORT
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out


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
        lines.append("<tr>" + "".join(f"<td>{text(v)}</td>" for v in values) + "</tr>")
    return "<table>" + "".join(lines) + "</table>"
