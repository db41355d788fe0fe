"""Is the generator copying its training images? A nearest-neighbour test in the evaluator's feature space.

The copy rate is the share of fakes that lie closer to their nearest training image than real images lie to
each other: the threshold is the `QUANTILE` (1%) point of the real images' leave-one-out nearest-neighbour
distances (each real image to its nearest *other* real image of the same pool), so a set of new real images
scores about 1% by construction, a generator that reproduces its training images (or nearly: small noise)
scores near 1, and one that draws new images lands in between, near the floor's rate.

The pool is every real image of the reference (halves A and B): training uses them all. Meehan et al.'s C_T
statistic (2020) needs images the run never trained on; gankit runs keep none out yet, so "ct" is null.
"""

from __future__ import annotations

import torch

QUANTILE = 0.01


def nearest(points: torch.Tensor, pool: torch.Tensor, skip_from: int | None = None,
            chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """(distance, index) of each point's nearest pool member. skip_from: the points are pool[skip_from:
    skip_from + len(points)], and each one's own entry is left out (leave-one-out)."""
    dists, index = [], []
    for start in range(0, len(points), chunk):
        d = torch.cdist(points[start:start + chunk].double(), pool.double())
        if skip_from is not None:
            rows = torch.arange(d.shape[0])
            d[rows, skip_from + start + rows] = float("inf")
        best = d.min(dim=1)
        dists.append(best.values)
        index.append(best.indices)
    return torch.cat(dists), torch.cat(index)


def threshold(real_nn: torch.Tensor, quantile: float = QUANTILE) -> float:
    """The distance below which only `quantile` of the real images have their nearest other real image."""
    return float(torch.quantile(real_nn.double(), quantile))


def closest_pairs(fakes: torch.Tensor, features: torch.Tensor, reals: torch.Tensor, pool: torch.Tensor,
                  count: int = 8) -> torch.Tensor:
    """The `count` fakes nearest to a real image, each followed by that real image: 2 * count images (uint8 or
    float, as given) for a gallery of the likeliest copies, closest first."""
    dist, index = nearest(features, pool)
    order = dist.argsort()[:count]
    pairs = [torch.stack([fakes[i], reals[index[i]].to(fakes.dtype)]) for i in order.tolist()]
    return torch.cat(pairs)


def copy_test(features: torch.Tensor, pool: torch.Tensor, limit: float, skip_from: int | None = None) -> dict:
    """The copy rate of `features` against the real pool at the distance `limit` (see `threshold`)."""
    dist, _ = nearest(features, pool, skip_from)
    return {"rate": round(float((dist < limit).double().mean()), 5), "threshold": round(limit, 5),
            "quantile": QUANTILE, "pool": len(pool), "ct": None}
