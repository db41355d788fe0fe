"""GAN quality as numbers, offline, in an evaluator's feature space.

- FD and KID: torchmetrics' FrechetInceptionDistance and KernelInceptionDistance, given gankit's own
  features through an identity "feature extractor" (features are computed once by gankit and reused by
  every metric, and the real side comes from the cached reference).
- Precision and recall: k-NN manifolds with k=3 (Kynkaanniemi et al. 2019). torchmetrics has no such
  metric, so it is written here: a sample is inside a manifold if it lies within the k-th-neighbour radius
  of at least one of the manifold's points.
- Mode coverage (labeled sources): the evaluator's predicted-class histogram of the fakes, the number of
  classes holding at least 5% of them, and KL(fakes || real class distribution).
- Spread: mean per-dimension std of the fake features over that of the real ones (1 = as varied as the data;
  a collapsing generator drives it towards 0).
- Copying (gankit.quality.copying): the share of fakes closer to a real image than real images are to each
  other; `copy_rate` and, with its threshold, `copying`.

Every metric is also computed for real half B against real half A: the floor, the best reachable value.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch import nn

from gankit.quality import copying

PR_K = 3  # neighbours for the precision/recall manifolds

# name -> (label, lower is better)
LABELS = {
    "fd": ("FD", True),
    "kid": ("KID", True),
    "precision": ("precision", False),
    "recall": ("recall", False),
    "classes_covered": ("classes >= 5%", False),
    "class_kl": ("class KL", True),
    "spread": ("spread", False),
    "copy_rate": ("copy rate", True),
    "class_accuracy": ("class accuracy", False),
}


class _Precomputed(nn.Module):
    """Identity 'feature extractor' for torchmetrics: the inputs already are features."""

    def __init__(self, dim: int):
        super().__init__()
        self.num_features = dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    from torchmetrics.image.fid import FrechetInceptionDistance

    # sync_on_compute=False: under torchrun only rank 0 measures, so torchmetrics must not wait for the others
    fid = FrechetInceptionDistance(feature=_Precomputed(real.shape[1]), sync_on_compute=False)
    fid.update(real, real=True)
    fid.update(fake, real=False)
    return float(fid.compute())


def kernel_distance(real: torch.Tensor, fake: torch.Tensor, subsets: int = 50, seed: int = 0) -> float:
    """KID: unbiased polynomial-kernel MMD^2, averaged over random subsets of up to 1,000 samples."""
    from torchmetrics.image.kid import KernelInceptionDistance

    size = min(1000, len(real), len(fake))
    with warnings.catch_warnings():  # "will save all extracted features": they are already in memory here
        warnings.simplefilter("ignore", UserWarning)
        kid = KernelInceptionDistance(feature=_Precomputed(real.shape[1]), subsets=subsets, subset_size=size,
                                      sync_on_compute=False)
    kid.update(real, real=True)
    kid.update(fake, real=False)
    with torch.random.fork_rng():  # torchmetrics draws its subsets from the global RNG
        torch.manual_seed(seed)
        mean, _ = kid.compute()
    return float(mean)


def kth_radius(points: torch.Tensor, k: int, chunk: int = 2048) -> torch.Tensor:
    """Distance from each point to its k-th nearest neighbour among the others."""
    radii = []
    for block in points.split(chunk):
        d = torch.cdist(block.double(), points.double())
        radii.append(d.kthvalue(k + 1, dim=1).values)  # the 1st smallest is the point itself (0)
    return torch.cat(radii)


def _inside(samples: torch.Tensor, manifold: torch.Tensor, radii: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """For each sample: is it within radii[j] of some manifold point j?"""
    hits = []
    for block in samples.split(chunk):
        d = torch.cdist(block.double(), manifold.double())
        hits.append((d <= radii.unsqueeze(0)).any(dim=1))
    return torch.cat(hits)


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PR_K,
                     real_radii: torch.Tensor | None = None) -> tuple[float, float]:
    """Improved precision (fakes inside the real manifold) and recall (reals inside the fake manifold).
    real_radii: the reals' k-th-neighbour radii when already known (they depend on the reals only)."""
    radii = kth_radius(real, k) if real_radii is None else real_radii
    precision = _inside(fake, real, radii).double().mean().item()
    recall = _inside(real, fake, kth_radius(fake, k)).double().mean().item()
    return precision, recall


@dataclass
class Reference:
    """Real features of two disjoint halves, B's predicted classes, and the real class distribution."""

    features_a: torch.Tensor
    features_b: torch.Tensor
    preds_b: torch.Tensor
    class_prior: torch.Tensor  # real label frequencies (empty when unlabeled)
    radii_a: dict[int, torch.Tensor] = field(default_factory=dict, repr=False, compare=False)  # k -> radii
    _copy_limit: list[float] = field(default_factory=list, repr=False, compare=False)  # computed once

    def knn_radii(self, k: int) -> torch.Tensor:
        """Half A's k-th-neighbour radii (the real manifold of precision), computed once per reference."""
        if k not in self.radii_a:
            self.radii_a[k] = kth_radius(self.features_a, k)
        return self.radii_a[k]

    @property
    def num_classes(self) -> int:
        return len(self.class_prior)

    @property
    def pool(self) -> torch.Tensor:
        """Every real image's features (A then B): the training images a fake may be a copy of."""
        return torch.cat([self.features_a, self.features_b])

    def copy_limit(self) -> float:
        """The copy test's threshold: the 1% point of the real images' leave-one-out nearest distances."""
        if not self._copy_limit:
            self._copy_limit.append(copying.threshold(copying.nearest(self.pool, self.pool, skip_from=0)[0]))
        return self._copy_limit[0]


def class_coverage(preds: torch.Tensor, prior: torch.Tensor, threshold: float = 0.05) -> tuple[int, float, list[float]]:
    """(classes holding >= threshold of the samples, KL(sample classes || prior), the histogram)."""
    hist = torch.bincount(preds, minlength=len(prior)).double()
    hist = hist / hist.sum()
    p, q = hist, prior.double()
    kl = float(torch.where(p > 0, p * (p / q.clamp_min(1e-12)).log(), torch.zeros_like(p)).sum())
    return int((hist >= threshold).sum()), kl, [round(v, 4) for v in hist.tolist()]


def spread(real: torch.Tensor, fake: torch.Tensor) -> float:
    return float(fake.double().std(0).mean() / real.double().std(0).mean().clamp_min(1e-12))


def compare(ref: Reference, features: torch.Tensor, preds: torch.Tensor | None, kid_subsets: int = 50,
            skip_from: int | None = None, held_out: int = 0) -> dict:
    """Every metric of `features` (and predicted classes) against the reference's half A; the copy test against
    every real image (skip_from: the features are the pool's own from there on, each left out of its test);
    held_out: the first images of half B were never trained on, which gives the copy test's C_T."""
    real = ref.features_a
    precision, recall = precision_recall(real, features, PR_K, ref.knn_radii(PR_K))
    copies = copying.copy_test(features, ref.pool, ref.copy_limit(), skip_from)
    if held_out and skip_from is None:
        train = torch.cat([ref.features_a, ref.features_b[held_out:]])
        copies["ct"] = copying.ct_statistic(features, train, ref.features_b[:held_out])
    out = {"fd": frechet_distance(real, features), "kid": kernel_distance(real, features, kid_subsets),
           "precision": precision, "recall": recall, "spread": spread(real, features),
           "copy_rate": copies["rate"], "copying": copies}
    if preds is not None and ref.num_classes:
        covered, kl, hist = class_coverage(preds, ref.class_prior)
        out.update(classes_covered=covered, class_kl=kl, class_histogram=hist)
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in out.items()}


def comparable_n(ref: Reference, n: int) -> int:
    """The sample size at which fakes and the floor are both measured: FD's bias depends on n (about
    1.1 + 4058/n on mnist5k), so the fakes face the floor's bar only at the floor's n, at most half B's size."""
    return min(n, len(ref.features_b))


def floor(ref: Reference, n: int, kid_subsets: int = 50) -> dict:
    """The same metrics for n real images of half B: the best a generator can reach at this sample size."""
    n = min(n, len(ref.features_b))
    return compare(ref, ref.features_b[:n], ref.preds_b[:n] if ref.num_classes else None, kid_subsets,
                   skip_from=len(ref.features_a))


def class_accuracy(preds: torch.Tensor, wanted: torch.Tensor, num_classes: int) -> tuple[float, list[float]]:
    """How often the evaluator reads a sample as the class it was drawn for: overall and per class."""
    hit = (preds == wanted).double()
    per_class = [round(float(hit[wanted == c].mean()), 4) if (wanted == c).any() else float("nan")
                 for c in range(num_classes)]
    return float(hit.mean()), per_class


def measure(sample: Callable[[int], torch.Tensor], evaluator: nn.Module, ref: Reference, n: int,
            kid_subsets: int = 50, labels: torch.Tensor | None = None, held_out: int = 0) -> dict:
    """Draw n images with sample(n) (floats in [-1, 1]) and measure them against the reference.

    labels: the classes a conditional generator was asked for; adds the evaluator's accuracy on them.
    """
    features, logits = evaluator.embed(sample(n))
    if not torch.isfinite(features).all():
        raise ValueError("the images' features are not finite (the generator's images or the evaluator's weights)")
    preds = None if logits is None else logits.argmax(1)
    out = compare(ref, features, preds, kid_subsets, held_out=held_out)
    if labels is not None and preds is not None:
        acc, per_class = class_accuracy(preds, labels.cpu(), ref.num_classes)
        out.update(class_accuracy=round(acc, 5), class_accuracy_per_class=per_class)
    return out


def table(values: dict, reference: dict | None = None) -> str:
    """A readable two- or three-column table: metric, value, real-vs-real floor."""
    rows = [("metric", "run", "real vs real")]
    for key, (label, _) in LABELS.items():
        if key not in values:
            continue
        fmt = (lambda v: f"{v}") if key == "classes_covered" else (lambda v: f"{v:.4g}")
        ref = fmt(reference[key]) if reference and key in reference else ""
        rows.append((label, fmt(values[key]), ref))
    width = [max(len(r[i]) for r in rows) for i in range(3)]
    return "\n".join(f"{a:<{width[0]}}  {b:>{width[1]}}  {c:>{width[2]}}".rstrip() for a, b, c in rows)


def is_better(new: float, old: float | None) -> bool:
    return old is None or (math.isfinite(new) and new < old)
