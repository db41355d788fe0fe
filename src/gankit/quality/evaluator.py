"""The evaluator for a data source, and the real data's side of every metric, both cached.

- The evaluator is trained once on first need and cached under the user cache dir ($GANKIT_CACHE_DIR,
  default ~/.cache/gankit), keyed by source name, a hash of the loaded data and its kind: a gankit
  classifier where the source has labels, a label-free one (gankit.quality.selfsup) where it has none or
  `evaluator_kind=self` asks for it. An explicit path overrides it.
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
from gankit.data import caches, loading
from gankit.errors import GankitError
from gankit.files import atomic_write, cache_dir, slug
from gankit.quality import classifier as clf
from gankit.quality import selfsup
from gankit.quality.metrics import PR_K, Reference

HALF_CAP = 10_000
EVALUATOR_VERSION = 2  # in the cache key: bump when the way evaluators are trained changes (2: half B held out)
SELF_VERSION = 1  # the same for the label-free evaluator
MIN_IMAGES = 2 * (PR_K + 1)  # precision/recall need each point's k-th neighbour within its half


def kind_for(data: loading.ImageData, kind: str = "auto") -> str:
    """The evaluator kind a source gets: "classifier" (its labels) or "self" (label-free)."""
    labeled = data.labels is not None and len(data.classes or ()) >= 2
    if kind == "auto":
        return "classifier" if labeled else "self"
    if kind == "classifier" and not labeled:
        raise GankitError(f"{data.name} has no labels to train a classifier evaluator on: use "
                          "evaluator_kind=self (label-free, the default for unlabeled data) or --features inception")
    if kind not in ("classifier", "self"):
        raise GankitError(f"evaluator_kind must be auto, classifier or self, got {kind!r}")
    return kind


def evaluator_for(data: loading.ImageData, path: str | Path | None = None, progress: bool = True,
                  epochs: int | None = None, kind: str = "auto") -> clf.Classifier:
    """The evaluator at `path`, or the cached one of this kind for this data (trained now if there is none)."""
    if path:
        model = clf.load_classifier(path)
        shape = (model.spec.channels, model.spec.image_size)
        if shape != (data.images.shape[1], data.images.shape[2]):
            raise GankitError(f"evaluator {path} takes {shape[0]}x{shape[1]}x{shape[1]} images, the data is "
                              f"{data.images.shape[1]}x{data.images.shape[2]}x{data.images.shape[3]}")
        return model
    kind = kind_for(data, kind)
    _, val_idx = halves(data)  # too few images is one line before anything is trained
    digest = clf.data_hash(data)
    c, s = data.images.shape[1], data.images.shape[2]
    version = f"v{EVALUATOR_VERSION}" if kind == "classifier" else f"self-v{SELF_VERSION}"
    cached = cache_dir() / "evaluators" / f"{slug(data.name)}-{c}x{s}-{digest[:16]}-{version}.safetensors"
    wanted = {"channels": c, "image_size": s, "source": data.name, "data_hash": digest,
              "objective": "labels" if kind == "classifier" else "contrastive",
              "classes": list(data.classes or ()) if kind == "classifier" else []}
    found = caches.reuse(cached, "evaluator", clf.load_classifier, lambda m: caches.mismatch(vars(m.spec), wanted),
                         console.note)
    if found is not None:
        return found
    say = console.say if progress else console.silent
    if kind == "classifier":
        say(f"training the evaluator for {data.name} (once; cached in {cached.parent})")
        model = train_evaluator(data, epochs=epochs or 8, progress=progress, log=say)
    else:
        say(f"training a label-free evaluator for {data.name} on its own images (once, {len(data) - len(val_idx)} "
            f"images; cached in {cached.parent})")
        model = selfsup.train_contrastive(data, epochs=epochs or selfsup.EPOCHS, progress=progress, log=say,
                                          val_idx=val_idx)
    clf.save_classifier(model, cached)
    return model


def train_evaluator(data: loading.ImageData, epochs: int = 8, progress: bool = True, log=console.say) -> clf.Classifier:
    """A classifier trained on everything but half B, the floor's real sample, which is its validation set.

    Features of images a network was trained on cluster tighter than those of new images, so a floor made
    of its training images would be a bar that even new real images miss (BENCHMARKS.md, fifth round).
    """
    return clf.train_classifier(data, epochs=epochs, progress=progress, log=log, val_idx=halves(data)[1])


def features_for(data: loading.ImageData, features: str = "evaluator", path: str | Path | None = None,
                 device: str = "cpu", progress: bool = True, kind: str = "auto"):
    """The feature space to measure in: gankit's evaluator for this data (of `kind`), or Inception-v3
    (`inception`)."""
    if features == "inception":
        if path:
            raise GankitError("--evaluator and --features inception exclude each other: pick one feature space")
        from gankit.quality.inception import InceptionFeatures

        return InceptionFeatures(device=device)
    if features != "evaluator":
        raise GankitError(f"unknown --features {features!r}: choose evaluator or inception")
    return evaluator_for(data, path, progress=progress, kind=kind)


def fingerprint(evaluator: torch.nn.Module) -> str:
    """A hash of the evaluator's weights: measurements are comparable only under the same fingerprint."""
    weights = sorted((k, v.detach().cpu().contiguous()) for k, v in evaluator.state_dict().items())
    return hashlib.sha256(b"".join(t.numpy().tobytes() for _, t in weights)).hexdigest()


def halves(data: loading.ImageData, cap: int = HALF_CAP) -> tuple[torch.Tensor, torch.Tensor]:
    """The indices of two disjoint random halves of the data (at most `cap` each, seeded): A, the reference
    that generators are measured against, and B, the floor's real sample."""
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(1234))
    half = min(len(data) // 2, cap)
    if 2 * half < MIN_IMAGES:
        raise GankitError(f"{data.name} holds {len(data)} images: too few to measure against "
                          f"(at least {2 * (PR_K + 1)})")
    return order[:half], order[half:2 * half]


def held_out(data: loading.ImageData, fraction: float, cap: int = HALF_CAP) -> torch.Tensor:
    """The indices of the images a run with `holdout=fraction` never trains on: the first ones of half B (so
    the floor's sample and the copy test's C_T use them)."""
    if not fraction:
        return torch.zeros(0, dtype=torch.long)
    b = halves(data, cap)[1]
    count = int(fraction * len(data))
    if count > len(b):
        raise GankitError(f"holdout={fraction:g} is {count} images of {data.name}; at most {len(b)} can be held "
                          "out (half the data, at most 10,000 images)")
    return b[:count]


def reference_for(data: loading.ImageData, evaluator: clf.Classifier) -> Reference:
    """The real reference for this data in this evaluator's feature space, from cache when possible."""
    ev = fingerprint(evaluator)
    path = cache_dir() / "reference" / f"{slug(data.name)}-{ev[:12]}-{clf.data_hash(data)[:16]}.safetensors"
    a, b = halves(data, getattr(evaluator, "half_cap", HALF_CAP))
    found = caches.reuse(path, "real-feature reference", _load_reference,
                         lambda ref: _misfit(ref, evaluator, data, a, b), console.note)
    if found is not None:
        return found
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


def _load_reference(path: Path) -> Reference:
    t = load_file(str(path))
    return Reference(t["features_a"], t["features_b"], t["preds_b"], t["class_prior"])


def _misfit(ref: Reference, evaluator, data: loading.ImageData, a: torch.Tensor, b: torch.Tensor) -> str | None:
    """What is wrong with a cached reference for this evaluator and data (caches.reuse's check): features of
    halves A and B at the evaluator's width, finite; B's predicted classes and the class prior only when the
    evaluator predicts classes, within them."""
    width = getattr(evaluator, "num_features", None)
    classes = len(getattr(getattr(evaluator, "spec", None), "classes", None) or ())
    labeled = classes and data.class_counts() is not None
    for name, t, want in (("features_a", ref.features_a, (len(a), width)),
                          ("features_b", ref.features_b, (len(b), width))):
        if not t.is_floating_point() or (width is not None and tuple(t.shape) != want) or t.ndim != 2 or \
                len(t) != want[0] or not torch.isfinite(t).all():
            return f"its {name} is a {t.dtype} {tuple(t.shape)}, not {want[0]} x {width or 'N'} finite floats"
    if ref.preds_b.dtype != torch.long or tuple(ref.preds_b.shape) != ((len(b),) if classes else (0,)) or \
            (classes and len(b) and not 0 <= int(ref.preds_b.min()) <= int(ref.preds_b.max()) < classes):
        return f"its preds_b ({ref.preds_b.dtype} {tuple(ref.preds_b.shape)}) are no classes of its evaluator"
    prior = ref.class_prior
    if not prior.is_floating_point() or tuple(prior.shape) != ((len(data.classes),) if labeled else (0,)) or \
            not torch.isfinite(prior).all() or (len(prior) and (prior.min() < 0 or abs(float(prior.sum()) - 1) > 1e-3)):
        return f"its class_prior ({prior.dtype} {tuple(prior.shape)}) is not the data's class frequencies"
    return None
