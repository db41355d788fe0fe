"""`gankit evaluate`: measure a run's generator against its data, beside the real-vs-real floor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gankit.data import loading
from gankit.errors import GankitError
from gankit.files import is_whole
from gankit.inference.sampling import sample
from gankit.models.registry import class_labels
from gankit.quality import evaluator as ev
from gankit.quality import metrics
from gankit.run import generator_file, layout
from gankit.run.metrics_log import MetricsFile


@dataclass
class Evaluation:
    run_dir: Path
    which: str  # "generator" or "best"
    features: str  # "evaluator" or "inception"
    epoch: int
    step: int
    n: int  # fakes measured, and the real images of the floor
    values: dict
    floor: dict
    notes: list[str] = field(default_factory=list)  # what the caller should be told (n capped, not recorded)

    def to_dict(self) -> dict:
        return {"kind": "eval", "source": "evaluate", "features": self.features, "generator": self.which,
                "epoch": self.epoch, "step": self.step, "n": self.n, **self.values, "floor": self.floor,
                "floor_n": self.n}

    def table(self) -> str:
        head = (f"{self.run_dir} ({self.which}, epoch {self.epoch}, step {self.step}, {self.n} samples, "
                f"{self.features} features)")
        return head + "\n" + metrics.table(self.values, self.floor)


def evaluate(run_dir: str | Path, n: int | None = None, evaluator: str | None = None, best: bool = False,
             seed: int = 0, device: str = "cpu", progress: bool = True, record: bool = True,
             features: str = "evaluator") -> Evaluation:
    """Measure a run's generator against its data; what `gankit evaluate` does.

    Args:
        run_dir: a gankit run directory.
        n: generated images to measure (>= 10); None: as many as the real-vs-real floor's held-out sample
            holds; more is capped there, with a note (FD is only comparable at equal n).
        evaluator: a classifier .safetensors whose features to use (default: the run's, or the cached one
            for its data, trained on first need).
        best: measure best.safetensors instead of the last generator.
        seed: the noise seed. device: "cpu", "cuda", ...
        progress: progress bars on stderr. record: append the result to RUN_DIR/metrics.jsonl.
        features: "evaluator" (gankit's classifier for the data) or "inception" (Inception-v3; the extra).
    Returns:
        an Evaluation: values (fd, kid, precision, recall, coverage, classes_covered, class_kl, spread, ...)
        beside floor (the same metrics for real vs real data), n, epoch, step and notes; .table() is what the
        command prints, .to_dict() its JSON.
    """
    if n is not None and n < 10:
        raise GankitError(f"-n must be >= 10 for the metrics to mean anything, got {n}")
    name = layout.BEST if best else layout.GENERATOR
    generator, cfg = generator_file.load_generator(run_dir, device, name=name)
    info = generator_file.export_info(run_dir, name)
    data = loading.load(cfg.data, cfg.data_dir or None, cfg.image_size, cfg.channels, cfg.subset)
    chosen = evaluator if features == "inception" else evaluator or cfg.evaluator or None
    model = ev.features_for(data, features, chosen, device=device, progress=progress)
    ref = ev.reference_for(data, model)
    notes = []
    if n is None:
        n = metrics.comparable_n(ref, ev.HALF_CAP)
    elif metrics.comparable_n(ref, n) < n:
        notes.append(f"measured at n = {metrics.comparable_n(ref, n)}, not {n}: the real-vs-real floor has only "
                     "that many held-out images, and FD is only comparable at equal n")
        n = metrics.comparable_n(ref, n)
    try:
        # a conditional generator needs labels in any feature space: in the data's class mix
        labels = class_labels(n, cfg.num_classes, prior=data.class_counts())
        values = metrics.measure(lambda k: sample(generator, k, cfg.z_dim, seed, device=device, labels=labels),
                                 model, ref, n, labels=labels if ref.num_classes else None)
    except ValueError as exc:
        raise GankitError(f"cannot evaluate {run_dir}: {exc}") from None
    result = Evaluation(Path(run_dir), "best" if best else "generator", features, _int(info.get("epoch")),
                        _int(info.get("step")), n, values, metrics.floor(ref, n), notes)
    if record:
        try:
            MetricsFile(Path(run_dir) / layout.METRICS).append(result.to_dict())
        except OSError as exc:  # a read-only run: the numbers are still printed
            notes.append(f"not recorded in {Path(run_dir) / layout.METRICS}: {exc.strerror or exc}")
    return result


def _int(value) -> int:
    return int(value) if is_whole(value) else 0
