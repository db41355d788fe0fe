"""gankit's metrics against the reference implementations, on the same random feature arrays:
FD against pytorch-fid's calculate_frechet_distance, precision and recall against prdc (k = 3)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from gankit.quality import metrics

fid_score = pytest.importorskip("pytorch_fid.fid_score")
prdc = pytest.importorskip("prdc")


def _features(seed: int, n: int = 600, dim: int = 16, shift: float = 0.0, scale: float = 1.0):
    rng = np.random.default_rng(seed)
    mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
    return (rng.normal(size=(n, dim)) @ mixing * scale + shift).astype(np.float64)


@pytest.mark.parametrize("shift, scale", [(0.0, 1.0), (0.5, 1.0), (0.0, 2.0), (1.0, 0.5)])
def test_frechet_distance_matches_pytorch_fid(shift, scale):
    real, fake = _features(0), _features(1, shift=shift, scale=scale)
    reference = fid_score.calculate_frechet_distance(real.mean(0), np.cov(real, rowvar=False),
                                                     fake.mean(0), np.cov(fake, rowvar=False))
    ours = metrics.frechet_distance(torch.from_numpy(real).float(), torch.from_numpy(fake).float())
    assert ours == pytest.approx(reference, rel=2e-3, abs=2e-3)


def test_frechet_distance_sees_covariance_not_only_means():
    # equal means, different covariances: FD = tr(S1 + S2 - 2 (S1 S2)^1/2) = d (1 + 4 - 2 * 2) = d
    rng = np.random.default_rng(0)
    real, fake = rng.normal(size=(20000, 4)), 2 * rng.normal(size=(20000, 4))
    ours = metrics.frechet_distance(torch.from_numpy(real).float(), torch.from_numpy(fake).float())
    assert ours == pytest.approx(4.0, rel=0.05)


@pytest.mark.parametrize("shift", [0.0, 0.3, 1.0])
def test_precision_recall_match_prdc(shift):
    real, fake = _features(2, n=400), _features(3, n=400, shift=shift, scale=1.3)
    reference = prdc.compute_prdc(real_features=real, fake_features=fake, nearest_k=metrics.PR_K)
    precision, recall = metrics.precision_recall(torch.from_numpy(real), torch.from_numpy(fake), metrics.PR_K)
    assert precision == pytest.approx(reference["precision"], abs=1e-9)
    assert recall == pytest.approx(reference["recall"], abs=1e-9)
