"""Is the generator copying its training images? A nearest-neighbour test in the evaluator's feature space.

The copy rate is the share of fakes that lie closer to their nearest training image than real images lie to
each other: the threshold is the `QUANTILE` (1%) point of the real images' leave-one-out nearest-neighbour
distances (each real image to its nearest *other* real image of the same pool), so a set of new real images
scores about 1% by construction, a generator that reproduces its training images (or nearly: small noise)
scores near 1, and one that draws new images lands in between, near the floor's rate.

The pool is every real image of the reference (halves A and B): training uses them all, except the images a
run holds out (`holdout=FRACTION`: the first ones of half B, never trained on). With held-out images there is
also Meehan et al.'s C_T statistic (2020): the training images are cut into k-means cells; in each cell holding
enough fakes, a Mann-Whitney U test compares the fakes' distances to their nearest training image with the
held-out images' (new real images: what "not copying" looks like); the cells' Z-scores are averaged, weighted
by their share of the held-out images. C_T far below 0: fakes sit closer to the training images than new real
images do (copying); near 0: as close as new images; far above 0: farther (underfitting). Without held-out
images "ct" is null.
"""

from __future__ import annotations

import torch

QUANTILE = 0.01
CELLS = 20  # k-means cells of the training images for C_T
MIN_PER_CELL = 20  # fakes (and held-out images) a cell needs to count in C_T, as Meehan et al. use


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


def kmeans(points: torch.Tensor, k: int, iterations: int = 25, seed: int = 0) -> torch.Tensor:
    """k centers of points (Lloyd's algorithm from k seeded distinct points)."""
    g = torch.Generator().manual_seed(seed)
    centers = points[torch.randperm(len(points), generator=g)[:k]].double()
    for _ in range(iterations):
        cell = torch.cdist(points.double(), centers).argmin(1)
        for j in range(len(centers)):
            if (cell == j).any():
                centers[j] = points[cell == j].double().mean(0)
    return centers


def mann_whitney_z(x: torch.Tensor, y: torch.Tensor) -> float:
    """The Z-score of the Mann-Whitney U statistic of x against y (U counts the pairs with x > y, ties half)."""
    ranks = torch.cat([x, y]).double().argsort().argsort().double() + 1  # ties are rare in float distances
    m, n = len(x), len(y)
    u = float(ranks[:m].sum()) - m * (m + 1) / 2
    return (u - m * n / 2) / ((m * n * (m + n + 1) / 12) ** 0.5)


def ct_statistic(fakes: torch.Tensor, train: torch.Tensor, held_out: torch.Tensor,
                 cells: int = CELLS) -> float | None:
    """Meehan et al.'s C_T of fakes, in the features of the training images and of held-out real images; None
    when no cell holds MIN_PER_CELL fakes and held-out images."""
    # as many cells as leave an average cell 2 * MIN_PER_CELL fakes and held-out images, at most `cells`
    k = max(1, min(cells, len(train), len(fakes) // (2 * MIN_PER_CELL), len(held_out) // (2 * MIN_PER_CELL)))
    centers = kmeans(train, k)
    d_fake, _ = nearest(fakes, train)
    d_held, _ = nearest(held_out, train)
    cell_fake = torch.cdist(fakes.double(), centers).argmin(1)
    cell_held = torch.cdist(held_out.double(), centers).argmin(1)
    total, weight = 0.0, 0.0
    for j in range(len(centers)):
        f, h = d_fake[cell_fake == j], d_held[cell_held == j]
        if len(f) >= MIN_PER_CELL and len(h) >= MIN_PER_CELL:
            share = len(h) / len(held_out)
            total += share * mann_whitney_z(f, h)
            weight += share
    return round(total / weight, 4) if weight else None
