"""`gankit detect train`: real images from a source, fakes from runs, folders or .npy files, one detector folder.

The real data is split once (seeded): `holdout` of it (default half) is never used, so that an evaluation on the
same source has images to measure with; of the rest, 20% of the real and 20% of the fake images are the
validation set (early stopping, the head's regularization), the others train. As many fakes as real images are
used, shared evenly between the FAKES given; a run's fakes are drawn from noise seed `seed + 1` (generate's
default is 0). The hashes of every image used (training and validation, real and fake) are saved with the
detector: `gankit detect eval` leaves those images out wherever they come from.

The image shape is the fakes' (a run's config, an array's shape, a folder's first image); real images are
loaded at that shape as training loads them. `--method discriminator --run RUN_DIR` trains nothing: it copies
the run's D and records the run's training data as its real images; a run trained with holdout > 0 also gives
the hashes of its held-out images (the trainer skipped them), the real images its evaluations measure with.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import torch

from gankit import checks, console
from gankit.checks import whole
from gankit.data import loading
from gankit.detect import inputs, store
from gankit.detect.discriminator import CALIBRATION, DiscriminatorDetector
from gankit.detect.linear import ProbeDetector
from gankit.detect.methods import check_method
from gankit.detect.scores import detection_metrics, labels_for
from gankit.errors import GankitError
from gankit.inference import fake_sources
from gankit.quality import evaluator as ev
from gankit.run.generator_file import load_run_config

from .. import __version__

VALIDATION = 0.2
MIN_REAL = 10


@dataclass
class Trained:
    path: Path
    method: str
    trained_on: dict[str, Any]

    def summary(self) -> str:
        real, val = self.trained_on.get("real", {}), self.trained_on.get("validation")
        if self.method == "discriminator":
            return (f"wrote {self.path}: the discriminator of {self.trained_on['run']} (epoch "
                    f"{self.trained_on['epoch']}), nothing trained; {real.get('n_used')} real images of "
                    f"{real.get('source')} that D trained on are left out of its evaluations"
                    + (f", which measure real images with the run's {real['n_held_out']} held-out ones (holdout="
                       f"{real['holdout']:g}): D never saw them" if real.get("n_held_out") else
                       " (a run trained with `--set holdout=0.1` keeps real images D never sees for them)"))
        fakes = ", ".join(f"{f.get('n')} from {f.get('path')}" for f in self.trained_on.get("fakes", []))
        return (f"wrote {self.path}: a {self.method} detector trained on {real.get('n_used')} real images of "
                f"{real.get('source')} and fakes ({fakes}); validation AUC {val['auc']:.4f}, accuracy at 0.5 "
                f"{val['acc']:.4f}; {real.get('n_held_out')} real images held out for evaluation")


def default_out(method: str) -> Path:
    return Path("runs") / f"detect-{method}-{datetime.now():%Y%m%d-%H%M%S}"


def train_detector(real: str | None = None, fakes: Sequence[str] = (), method: str = "cnn",
                   out: str | Path | None = None, run: str | Path | None = None, best: bool = False,
                   n: int | None = None, holdout: float = 0.5, seed: int = 0, data_dir: str | None = None,
                   image_size: int | None = None, evaluator: str | None = None, features: str = "evaluator",
                   label_rule: str = "max", batchnorm: str = "real", progress: bool = True, **settings) -> Trained:
    """Train a detector of `method` on real images of the source `real` against `fakes` (run directories,
    folders, .npy files) and write it to `out`; for method "discriminator", copy `run`'s D instead."""
    check_method(method)
    log = console.say if progress else console.silent
    out = store.check_out(out or default_out(method))
    if method == "discriminator":
        if real or fakes:
            raise GankitError("--method discriminator trains nothing, so it takes no --real or --fake: its real "
                              "images are the run's own data (give --run RUN_DIR)")
        return _discriminator(run, out, label_rule, batchnorm)
    if run:
        raise GankitError("--run names the run whose discriminator is the detector: use it with "
                          "--method discriminator (fakes come from --fake)")
    if not real or not fakes:
        raise GankitError(f"the {method} method needs real images (--real SOURCE) and fakes (--fake FAKES)")
    if n is not None and whole(n, "-n", None) < MIN_REAL:  # a whole number (the API's too), then its range
        raise GankitError(f"-n is the number of real images to train on: at least {MIN_REAL}, got {n}")
    checks.seed(seed, spare=2)  # the real split, and seed + 1, seed + 2 for the fakes and their split
    if not 0 <= holdout < 1:
        raise GankitError(f"--holdout is the share of real images kept for evaluation, in [0, 1), got {holdout}")
    start = time.perf_counter()
    shape = _shape(fakes, image_size)
    data = inputs.load_real(real, shape, data_dir)
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))
    held_out = int(round(holdout * len(data)))
    used = order[held_out:][:min(n or fake_sources.MAX_IMAGES, fake_sources.MAX_IMAGES)].sort().values
    if len(used) < MIN_REAL:
        raise GankitError(f"{len(used)} real images of {real} are left for training (of {len(data)}, "
                          f"{held_out} held out): at least {MIN_REAL} are needed")
    real_images = data.images[used].contiguous()
    fake_sets = [fake_sources.load_fakes(path, count, shape, seed + 1, best)
                 for path, count in zip(fakes, _shares(len(real_images), len(fakes)))]
    fake_images = torch.cat([f.images for f in fake_sets])
    hashes = {"real_hashes": inputs.image_hashes(real_images), "fake_hashes": inputs.image_hashes(fake_images)}
    _check_apart(hashes, real)
    (real_train, real_val), (fake_train, fake_val) = _split(real_images, seed), _split(fake_images, seed + 2)
    detector = _build(method, shape, data, evaluator, features, settings, progress)
    log(f"training a {method} detector on {len(real_train)} real and {len(fake_train)} fake images "
        f"({len(real_val)} + {len(fake_val)} for validation)")
    records = detector.fit(real_train, fake_train, real_val, fake_val, seed=seed, log=log)
    val_metrics = detection_metrics(labels_for(len(real_val), len(fake_val)),
                                    detector.scores(torch.cat([real_val, fake_val])).numpy())
    trained_on = {"trained": True, "seconds": round(time.perf_counter() - start, 1),
                  "real": {"source": real, "n_total": len(data), "n_held_out": held_out, "n_used": len(used),
                           "n_validation": len(real_val), "seed": seed, "holdout": holdout},
                  "fakes": [f.source for f in fake_sets], "n_fake_validation": len(fake_val),
                  "validation": {k: round(v, 5) for k, v in val_metrics.items()}}
    records.append({"kind": "trained", **{k: trained_on[k] for k in ("seconds", "validation")}})
    tensors = {**detector.tensors(), **hashes}
    path = store.write(out, _config(method, shape, detector.settings), tensors, trained_on, records)
    return Trained(path, method, trained_on)


def _check_apart(hashes: dict[str, torch.Tensor], real: str) -> None:
    """Refuse fakes of which more than a tenth are, pixel for pixel, real training images (the real data
    given as fakes, or fakes mixed with it). Fakes equal to held-out real images are not looked for."""
    same = int(torch.isin(hashes["fake_hashes"], hashes["real_hashes"]).sum())
    if same * 10 > len(hashes["fake_hashes"]):
        raise GankitError(f"{same} of the {len(hashes['fake_hashes'])} fakes are, pixel for pixel, real images of "
                          f"{real}: the same pictures as real and as fake leave nothing to learn (is --fake the "
                          "real data?)")


def _config(method: str, shape: tuple[int, int], settings: dict[str, Any]) -> dict[str, Any]:
    return {"method": method, "channels": shape[0], "image_size": shape[1], "gankit": __version__,
            "created": datetime.now().isoformat(timespec="seconds"), "settings": settings}


def _shape(fakes: Sequence[str], image_size: int | None) -> tuple[int, int]:
    """The detector's (channels, size): the first FAKES' (each FAKES is checked against it when loaded)."""
    channels, size = fake_sources.shape_of(fakes[0])
    if image_size is not None and image_size != size:
        raise GankitError(f"--image-size {image_size} differs from the fakes' size ({fakes[0]} is {size}x{size}): "
                          "fakes are never resized; leave --image-size out or give fakes of that size")
    return channels, size


def _shares(total: int, k: int) -> list[int]:
    """total split into k near-equal whole parts."""
    return [total // k + (i < total % k) for i in range(k)]


def _split(images: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(training, validation): a seeded random VALIDATION share (at least one image) for validation."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    k = max(1, int(round(VALIDATION * len(images))))
    return images[order[k:]], images[order[:k]]


def _build(method: str, shape: tuple[int, int], data: loading.ImageData, evaluator: str | None,
           features: str, settings: dict[str, Any], progress: bool) -> Any:
    """An untrained detector; the probe gets its frozen feature extractor here."""
    cls = check_method(method)
    unknown = sorted(set(settings) - set(cls.options))
    if unknown:
        raise GankitError(f"{', '.join(unknown)}: not a setting of the {method} method"
                          + (f" (its settings: {', '.join(cls.options)})" if cls.options else ""))
    if method != "probe":
        return cls({"channels": shape[0], "image_size": shape[1], **settings})
    if features == "inception":
        from gankit.quality.inception import InceptionFeatures

        return ProbeDetector({"features": "inception", **settings}, InceptionFeatures())
    if features != "evaluator":
        raise GankitError(f"unknown --features {features!r}: choose evaluator or inception")
    if evaluator is None and data.labels is None:
        raise GankitError(f"{data.name} has no labels to train the evaluator whose features the probe uses: pass "
                          "--evaluator PATH (a `gankit classifier train` file) or --features inception")
    model = ev.evaluator_for(data, evaluator, progress=progress)
    return ProbeDetector({"features": "evaluator", "evaluator": dataclasses.asdict(model.spec),
                          "evaluator_path": str(evaluator or "the cached evaluator of the real source"),
                          **settings}, model)


def _discriminator(run: str | Path | None, out: Path, label_rule: str, batchnorm: str) -> Trained:
    if not run:
        raise GankitError("--method discriminator needs --run RUN_DIR: the run whose D judges the images")
    cfg = load_run_config(run)
    data = loading.load_for(cfg)
    held = ev.held_out(data, cfg.holdout)  # the images the trainer skipped: real pictures D never saw
    trained = torch.nonzero(~torch.isin(torch.arange(len(data)), held)).flatten()
    order = trained[torch.randperm(len(trained), generator=torch.Generator().manual_seed(0))[:CALIBRATION]]
    detector = DiscriminatorDetector.from_run(run, data.images[order.sort().values], label_rule, batchnorm)
    s = detector.settings
    trained_on = {"trained": False, "run": s["run"], "epoch": s["epoch"], "step": s["step"],
                  "real": {"source": cfg.data, "subset": cfg.subset, "n_used": len(trained), "holdout": cfg.holdout},
                  "fakes": [{"kind": fake_sources.RUN, "path": s["run"], "note": "D trained against this generator"}]}
    tensors = {**detector.tensors(), "real_hashes": inputs.image_hashes(data.images[trained])}
    if len(held):  # what its evaluations measure real images with (a picture D also trained on was seen)
        held_hashes = inputs.image_hashes(data.images[held])
        tensors["held_hashes"] = held_hashes[~torch.isin(held_hashes, tensors["real_hashes"])]
        trained_on["real"]["n_held_out"] = len(tensors["held_hashes"])
    path = store.write(out, _config("discriminator", (cfg.channels, cfg.image_size), s), tensors, trained_on,
                       [{"kind": "trained", "seconds": 0.0, "run": s["run"], "epoch": s["epoch"]}])
    return Trained(path, "discriminator", trained_on)
