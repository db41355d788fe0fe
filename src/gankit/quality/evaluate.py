"""`gankit evaluate`: measure a run's generator against its data, beside the real-vs-real floor."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch

from gankit import checks
from gankit.checks import whole
from gankit.config import MAX_IMAGE_SIZE
from gankit.data import batches, loading
from gankit.errors import GankitError
from gankit.files import atomic_write, is_whole, own_in_place
from gankit.images import grid, save_grid
from gankit.inference import fake_sources
from gankit.inference.sampling import sample
from gankit.models.registry import class_labels
from gankit.quality import copying, metrics
from gankit.quality import evaluator as ev
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
    fakes: dict | None = None  # evaluate_fakes: where the fakes came from (gankit.inference.fake_sources)

    def to_dict(self) -> dict:
        out = {"kind": "eval", "source": "evaluate", "features": self.features, "generator": self.which,
               "epoch": self.epoch, "step": self.step, "n": self.n, **self.values, "floor": self.floor,
               "floor_n": self.n}
        return out if self.fakes is None else {**out, "fakes": self.fakes, "real": str(self.run_dir)}

    def table(self) -> str:
        if self.fakes is not None:
            head = f"{self.fakes.get('path')} against {self.run_dir} ({self.n} images, {self.features} features)"
        else:
            head = (f"{self.run_dir} ({self.which}, epoch {self.epoch}, step {self.step}, {self.n} samples, "
                    f"{self.features} features)")
        return head + "\n" + metrics.table(self.values, self.floor)


def evaluate(run_dir: str | Path, n: int | None = None, evaluator: str | None = None, best: bool = False,
             seed: int = 0, device: str = "cpu", progress: bool = True, record: bool = True,
             features: str = "evaluator", kind: str | None = None) -> Evaluation:
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
        features: "evaluator" (gankit's evaluator for the data) or "inception" (Inception-v3; the extra).
        kind: the cached evaluator's kind, "classifier" (labels) or "self" (label-free); None: the run's config's
            evaluator_kind (auto: classifier when the data has labels).
    Returns:
        an Evaluation: values (fd, kid, precision, recall, coverage, classes_covered, class_kl, spread, ...)
        beside floor (the same metrics for real vs real data), n, epoch, step and notes; .table() is what the
        command prints, .to_dict() its JSON.
    """
    if n is not None:
        whole(n, "-n (fakes measured)", 10)
    seed = checks.seed(seed)
    if record:  # a metrics.jsonl it may not append to is refused before any work (a link: gankit.files)
        own_in_place(Path(run_dir) / layout.METRICS)
    name = layout.BEST if best else layout.GENERATOR
    generator, cfg = generator_file.load_generator(run_dir, device, name=name)
    info = generator_file.export_info(run_dir, name)
    data = loading.load_for(cfg)
    chosen = evaluator if features == "inception" else evaluator or cfg.evaluator or None
    model = ev.features_for(data, features, chosen, device=device, progress=progress, kind=kind or cfg.evaluator_kind)
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
        fakes = sample(generator, n, cfg.z_dim, seed, device=device, labels=labels)
        held = len(ev.held_out(data, cfg.holdout)) if features != "inception" else 0  # C_T in gankit's features
        values = metrics.measure(lambda k: fakes[:k], model, ref, n, labels=labels if ref.num_classes else None,
                                 held_out=held)
    except ValueError as exc:
        raise GankitError(f"cannot evaluate {run_dir}: {exc}") from None
    result = Evaluation(Path(run_dir), "best" if best else "generator", features, _int(info.get("epoch")),
                        _int(info.get("step")), n, values, metrics.floor(ref, n), notes)
    if record:
        if features != "inception":  # Inception features of every real image would take minutes
            try:
                _write_copies(Path(run_dir) / layout.COPIES, fakes, model, data, ref)
            except OSError as exc:
                notes.append(f"not written: {Path(run_dir) / layout.COPIES} ({exc.strerror or exc})")
        try:
            MetricsFile(Path(run_dir) / layout.METRICS).append(result.to_dict())
        except OSError as exc:  # a read-only run: the numbers are still printed
            notes.append(f"not recorded in {Path(run_dir) / layout.METRICS}: {exc.strerror or exc}")
    return result


def _write_copies(path: Path, fakes: torch.Tensor, model, data: loading.ImageData, ref: metrics.Reference,
                  count: int = 8) -> None:
    """RUN_DIR/copies.png: the `count` fakes closest to a training image, each beside it (two per row's pair).
    The real side is the reference's pool: its features are those of halves A then B, in that order."""
    a, b = ev.halves(data, getattr(model, "half_cap", ev.HALF_CAP))
    features, _ = model.embed(fakes)
    pairs = copying.closest_pairs(batches.to_uint8(fakes), features, data.images[torch.cat([a, b])], ref.pool,
                                  count)
    picture = grid(pairs, nrow=4)
    atomic_write(path, lambda tmp: save_grid(picture, tmp))


def evaluate_fakes(fakes: str | Path, real: str, n: int | None = None, evaluator: str | None = None,
                   features: str = "evaluator", kind: str = "auto", seed: int = 0, data_dir: str | None = None,
                   device: str = "cpu", progress: bool = True) -> Evaluation:
    """Measure images that any tool made against a data source; what `gankit evaluate --fakes X --real S` does.

    Args:
        fakes: FAKES as `gankit detect` takes them: a folder of images, an .npy (float in [-1, 1] or uint8,
            N x C x H x W) or a gankit run directory. The real data is read at the fakes' size and channels.
        real: the data source they are measured against (mnist5k, folder:PATH, packed:DIR, ...).
        n: fakes to measure (>= 10); None: as many as there are, up to the real-vs-real floor's sample.
        evaluator: a classifier .safetensors; features: "evaluator" or "inception"; kind: the cached
            evaluator's kind (auto, classifier, self). seed: which fakes when there are more than n.
        data_dir: where torchvision datasets live. device, progress: as for evaluate.
    Returns:
        an Evaluation of the fakes beside the floor of the real data at the same n (nothing is recorded).
    """
    if n is not None:
        whole(n, "-n (fakes measured)", 10)
    seed = checks.seed(seed)
    channels, size = fake_sources.shape_of(fakes)
    if size < 1:
        raise GankitError(f"the fakes in {fakes} are not square: give square images (as generators make)")
    if not 8 <= size <= MAX_IMAGE_SIZE:
        raise GankitError(f"the fakes in {fakes} are {size}x{size}: gankit measures images of 8x8 to "
                          f"{MAX_IMAGE_SIZE}x{MAX_IMAGE_SIZE}")
    data = loading.load(real, data_dir, size, channels)
    model = ev.features_for(data, features, evaluator, device=device, progress=progress, kind=kind)
    ref = ev.reference_for(data, model)
    wanted = metrics.comparable_n(ref, n or ev.HALF_CAP)
    found = fake_sources.load_fakes(fakes, wanted, (channels, size), seed)
    notes = []
    if n is not None and len(found.images) < n:
        why = ("the real-vs-real floor has only that many held-out images, and FD is only comparable at equal n"
               if wanted < n else "there are only that many fakes")
        notes.append(f"measured at n = {len(found.images)}, not {n}: {why}")
    n = len(found.images)
    if n < 10:
        raise GankitError(f"{fakes} holds {n} readable images: at least 10 are needed for the metrics")
    values = metrics.measure(lambda k: found.images[:k], model, ref, n)
    return Evaluation(Path(real), "fakes", features, 0, 0, n, values, metrics.floor(ref, n), notes, found.source)


def _int(value) -> int:
    return int(value) if is_whole(value) else 0
