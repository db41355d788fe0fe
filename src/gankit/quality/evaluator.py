"""The evaluator for a data source, and the real data's side of every metric, both cached.

- The evaluator (a gankit classifier) is trained once on first need and cached under the user cache dir
  ($GANKIT_CACHE_DIR, default ~/.cache/gankit), keyed by source name and a hash of the loaded data;
  an explicit path overrides it.
- The real reference: the data split into two disjoint random halves A and B (at most 10,000 each), their
  evaluator features and B's predicted classes. Runs are measured against A; B against A is the floor
  (the best a generator can reach). Cached per (evaluator, data) so no call recomputes real features.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from gankit import console
from gankit.data import loading
from gankit.errors import GankitError
from gankit.files import atomic_write, cache_dir, slug
from gankit.quality import classifier as clf
from gankit.quality.metrics import PR_K, Reference

HALF_CAP = 10_000
EVALUATOR_VERSION = 2  # in the cache key: bump when the way evaluators are trained changes (2: half B held out)


def evaluator_for(data: loading.ImageData, path: str | Path | None = None, progress: bool = True,
                  epochs: int = 8) -> clf.Classifier:
    """The evaluator at `path`, or the cached one for this data (trained now if there is none)."""
    if path:
        model = clf.load_classifier(path)
        shape = (model.spec.channels, model.spec.image_size)
        if shape != (data.images.shape[1], data.images.shape[2]):
            raise GankitError(f"evaluator {path} takes {shape[0]}x{shape[1]}x{shape[1]} images, the data is "
                              f"{data.images.shape[1]}x{data.images.shape[2]}x{data.images.shape[3]}")
        return model
    digest = clf.data_hash(data)
    c, s = data.images.shape[1], data.images.shape[2]
    cached = cache_dir() / "evaluators" / f"{slug(data.name)}-{c}x{s}-{digest[:16]}-v{EVALUATOR_VERSION}.safetensors"
    if cached.is_file():
        try:
            return clf.load_classifier(cached)
        except GankitError:
            cached.unlink(missing_ok=True)  # a damaged cache entry is retrained, not fatal
    say = console.say if progress else console.silent
    say(f"training the evaluator for {data.name} (once; cached in {cached.parent})")
    model = train_evaluator(data, epochs=epochs, progress=progress, log=say)
    clf.save_classifier(model, cached)
    return model


def train_evaluator(data: loading.ImageData, epochs: int = 8, progress: bool = True, log=console.say) -> clf.Classifier:
    """A classifier trained on everything but half B, the floor's real sample, which is its validation set.

    Features of images a network was trained on cluster tighter than those of new images, so a floor made
    of its training images would be a bar that even new real images miss (BENCHMARKS.md, fifth round).
    """
    return clf.train_classifier(data, epochs=epochs, progress=progress, log=log, val_idx=halves(data)[1])


def features_for(data: loading.ImageData, features: str = "evaluator", path: str | Path | None = None,
                 device: str = "cpu", progress: bool = True):
    """The feature space to measure in: gankit's evaluator for this data, or Inception-v3 (`inception`)."""
    if features == "inception":
        if path:
            raise GankitError("--evaluator and --features inception exclude each other: pick one feature space")
        from gankit.quality.inception import InceptionFeatures

        return InceptionFeatures(device=device)
    if features != "evaluator":
        raise GankitError(f"unknown --features {features!r}: choose evaluator or inception")
    return evaluator_for(data, path, progress=progress)


def fingerprint(evaluator: torch.nn.Module) -> str:
    """A hash of the evaluator's weights: measurements are comparable only under the same fingerprint."""
    weights = sorted((k, v.detach().cpu().contiguous()) for k, v in evaluator.state_dict().items())
    return hashlib.sha256(b"".join(t.numpy().tobytes() for _, t in weights)).hexdigest()


def halves(data: loading.ImageData, cap: int = HALF_CAP) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices of two disjoint random halves of the data (at most `cap` each, seeded): A, the reference
    that generators are measured against, and B, the floor's real sample."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1234))
    half = min(len(data) // 2, cap)
    if half < PR_K + 1:  # precision/recall need each point's k-th neighbour within its half
        raise GankitError(f"{data.name} holds {len(data)} images: too few to measure against "
                          f"(at least {2 * (PR_K + 1)})")
    return order[:half], order[half:2 * half]


def reference_for(data: loading.ImageData, evaluator: clf.Classifier) -> Reference:
    """The real reference for this data in this evaluator's feature space, from cache when possible."""
    ev = fingerprint(evaluator)
    path = cache_dir() / "reference" / f"{slug(data.name)}-{ev[:12]}-{clf.data_hash(data)[:16]}.safetensors"
    if path.is_file():
        try:
            t = load_file(str(path))
            return Reference(t["features_a"], t["features_b"], t["preds_b"], t["class_prior"])
        except Exception:  # noqa: BLE001 - a damaged cache entry is recomputed
            path.unlink(missing_ok=True)
    a, b = halves(data, getattr(evaluator, "half_cap", HALF_CAP))
    features_a, _ = evaluator.embed(data.images[a])
    features_b, logits_b = evaluator.embed(data.images[b])
    if logits_b is not None and (counts := data.class_counts()) is not None:
        prior = (counts.double() / counts.sum()).float()
    else:
        prior = torch.zeros(0)
    preds_b = logits_b.argmax(1) if logits_b is not None else torch.zeros(0, dtype=torch.long)
    ref = Reference(features_a, features_b, preds_b, prior)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {"features_a": ref.features_a, "features_b": ref.features_b, "preds_b": ref.preds_b,
               "class_prior": ref.class_prior}
    atomic_write(path, lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, tmp))
    return ref
