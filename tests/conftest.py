"""Shared fixtures: small data written by the tests themselves, and small trained runs."""

from __future__ import annotations

import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gankit import config
from gankit.training.launch import train


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    # Evaluators and real-feature caches go to a per-session folder, never to the user's ~/.cache.
    import os

    old = os.environ.get("GANKIT_CACHE_DIR")
    os.environ["GANKIT_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if old is None:
        os.environ.pop("GANKIT_CACHE_DIR", None)
    else:
        os.environ["GANKIT_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _offline(monkeypatch):
    # Nothing reaches the network at test time: a missing torchvision dataset must fail fast and clearly.
    monkeypatch.setenv("GANKIT_OFFLINE", "1")


def write_idx(raw: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write MNIST-format IDX files (train and t10k) the way torchvision expects them under .../raw."""
    raw.mkdir(parents=True, exist_ok=True)
    n, h, w = images.shape
    for split in ("train", "t10k"):
        (raw / f"{split}-images-idx3-ubyte").write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.tobytes())
        (raw / f"{split}-labels-idx1-ubyte").write_bytes(struct.pack(">II", 2049, n) + labels.tobytes())


def digit_like(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 uint8 images: a bright square whose position encodes the label, on black."""
    rng = np.random.default_rng(seed)
    labels = (np.arange(n) % 10).astype(np.uint8)
    images = np.zeros((n, 28, 28), np.uint8)
    for i, y in enumerate(labels):
        r, c = 2 + 2 * (y // 5) * 4, 2 + (y % 5) * 5
        images[i, r:r + 8, c:c + 5] = 200 + rng.integers(0, 55)
    return images, labels


def write_cifar(root: Path, n_per_batch: int = 4) -> None:
    """CIFAR-10 python batches (pickles of numpy arrays, as the real archive has) under cifar-10-batches-py."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 "labels": list(rng.integers(0, 10, n_per_batch))}
        (folder / name).write_bytes(pickle.dumps(batch))
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    (folder / "batches.meta").write_bytes(pickle.dumps({"label_names": names}))


def grid_scale(width: int, min_width: int = 512) -> int:
    """The whole factor a grid file is enlarged by: the smallest k with width * k >= min_width (at least 1)."""
    return max(1, -(-min_width // width))


def tiny_config(**overrides) -> config.Config:
    base = dict(subset=256, batch_size=32, epochs=1, device="cpu", sample_count=16, log_every=4)
    preset = overrides.pop("preset", "simple-gan")
    return config.resolve(preset, **{**base, **overrides})


@pytest.fixture(scope="session")
def mlp_run(tmp_path_factory) -> Path:
    """A finished 1-epoch simple-gan run on 256 digits (trained once per test session)."""
    run = tmp_path_factory.mktemp("runs") / "mlp"
    train(tiny_config(), run, progress=False)
    return run


@pytest.fixture(scope="session")
def dcgan_run(tmp_path_factory) -> Path:
    """A finished 1-epoch dcgan run on 256 digits."""
    run = tmp_path_factory.mktemp("runs") / "dcgan"
    train(tiny_config(preset="dcgan"), run, progress=False)
    return run


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under folder with its bytes: to prove that a failed command changed nothing."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def children(pid: int) -> list[int]:
    """The PIDs of a process's children (from /proc: Linux)."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            pass
    return found


class _InceptionStub(nn.Module):
    """Same contract as the FID Inception: N x 3 x 299 x 299 in, N x D features out."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert x.shape[1] == 3 and x.shape[2] == 299 and x.shape[3] == 299
        return nn.functional.adaptive_avg_pool2d(x, 4).flatten(1)  # 48 features


@pytest.fixture
def stub_weights(tmp_path, monkeypatch):
    path = tmp_path / "stub.pt"
    torch.jit.script(_InceptionStub()).save(str(path))
    monkeypatch.setenv("GANKIT_INCEPTION_WEIGHTS", str(path))
    return path


@pytest.fixture
def scored(monkeypatch):
    """The images each detector made by evaluate_detector scores, in the order it scores them."""
    from gankit.detect import evaluation

    seen = []
    restore = evaluation.restore

    def spy(*args):
        detector = restore(*args)
        score = detector.scores
        detector.scores = lambda x: (seen.append(x), score(x))[1]
        return detector

    monkeypatch.setattr(evaluation, "restore", spy)
    return seen
