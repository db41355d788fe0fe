"""What a detector looks at besides its fakes (gankit.inference.fake_sources): real images from any data source
at the detector's size, and the hashes that keep its training images out of its evaluations.

Every image a detector is trained on is remembered by a 64-bit hash of its pixels (`image_hashes`), so that an
evaluation can leave out exactly those images, whatever source they are read from again.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch

from gankit.data import loading
from gankit.errors import GankitError


def load_real(source: str, shape: tuple[int, int], data_dir: str | Path | None = None) -> loading.ImageData:
    """A data source at the detector's shape (resized and converted the way training reads it)."""
    data = loading.load(source, data_dir, shape[1], shape[0])
    if len(data) == 0:
        raise GankitError(f"{source} holds no images")
    return data


def image_hashes(images: torch.Tensor) -> torch.Tensor:
    """A 64-bit hash of each image's shape and pixels (int64, one per image)."""
    out = np.empty(len(images), dtype=np.int64)
    head = repr(tuple(images.shape[1:])).encode()
    for start in range(0, len(images), 4096):
        for j, image in enumerate(images[start:start + 4096].contiguous().numpy()):
            digest = hashlib.blake2b(head + image.tobytes(), digest_size=8).digest()
            out[start + j] = int.from_bytes(digest, "little", signed=True)
    return torch.from_numpy(out)


def unseen(images: torch.Tensor, seen: torch.Tensor, n: int, seed: int,
           only: torch.Tensor | None = None) -> tuple[torch.Tensor, int]:
    """(indices of up to n images, in a seeded random order, whose hashes are not in seen, and with `only`
    are in only (a run's held-out images); how many images met on the way were left out because they are in
    seen)."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))
    kept, have, left_out = [], 0, 0
    for start in range(0, len(order), 4096):
        index = order[start:start + 4096]
        hashes = image_hashes(images[index])
        trained = torch.isin(hashes, seen)
        fresh = ~trained if only is None else ~trained & torch.isin(hashes, only)
        left_out += int(trained.sum())
        kept.append(index[fresh])
        have += int(fresh.sum())
        if have >= n:
            break
    return torch.cat(kept)[:n] if kept else torch.zeros(0, dtype=torch.long), left_out
