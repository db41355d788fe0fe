"""`gankit report DETECTOR_DIR`: one self-contained page about a detector (DETECTOR_DIR/report.html).

What it was trained on, its validation numbers, the ROC curves of its evaluations in one figure, a table of every
evaluation (fakes, degradation, AUC, AP, accuracies) and its detector.toml. Everything comes from the folder.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

from ..files import atomic_write
from ..report import STYLE, img_tag, png_of
from . import store
from .roc import plot_roc
from .tables import cell as _text
from .tables import condition_text, describe_fakes, evaluation_table, fakes_text

is_detector = store.is_detector
MAX_CURVES = 12  # the latest evaluations drawn in the ROC figure


def write_detector_report(detector_dir: str | Path) -> Path:
    """Write DETECTOR_DIR/report.html and return its path."""
    stored = store.read(detector_dir)
    path, config, trained_on = stored.path, stored.config, stored.trained_on
    rows = store.evaluations(path)
    real = trained_on.get("real") if isinstance(trained_on.get("real"), dict) else {}
    parts = [f"<h1>gankit detector: {html.escape(path.name)}</h1>",
             f"<p>{html.escape(str(config.get('method')))} detector of {config.get('channels')}-channel "
             f"{config.get('image_size')}x{config.get('image_size')} images.</p>"]
    if trained_on.get("trained") is False:
        parts.append(f"<p>The discriminator of {_text(trained_on.get('run'))} at epoch {_text(trained_on.get('epoch'))}"
                     f": nothing trained. The {_text(real.get('n_used'))} real images it trained on "
                     f"({_text(real.get('source'))}) are left out of its evaluations.</p>")
    else:
        fakes = "; ".join(describe_fakes(f) for f in trained_on.get("fakes", []) if isinstance(f, dict))
        val = trained_on.get("validation") if isinstance(trained_on.get("validation"), dict) else {}
        parts.append(f"<p>Trained on {_text(real.get('n_used'))} real images of {_text(real.get('source'))} "
                     f"({_text(real.get('n_held_out'))} held out for evaluation) and fakes from {html.escape(fakes)}, "
                     f"in {_text(trained_on.get('seconds'))} s. Validation: ROC AUC {_text(val.get('auc'))}, "
                     f"accuracy at 0.5 {_text(val.get('acc'))}.</p>")
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
    parts.append("<h2>Config</h2><pre>" + html.escape((path / store.DETECTOR).read_text(encoding="utf-8")) + "</pre>")
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>gankit detector: "
            f"{html.escape(path.name)}</title><style>{STYLE}</style></head><body>" + "\n".join(parts)
            + "</body></html>")
    out = path / "report.html"
    atomic_write(out, lambda tmp: Path(tmp).write_text(page, encoding="utf-8"))
    return out
