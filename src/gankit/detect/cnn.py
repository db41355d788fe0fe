"""The cnn method: a small convolutional classifier trained from scratch on real (0) and fake (1) images.

conv 3x3 (16) -> conv 3x3 stride 2 (32) -> conv 3x3 stride 2 (64) -> average pool to 4x4 -> linear -> logit,
LeakyReLU(0.2) between. No pooling or stride in the first layer, so that pixel-level traces (the checkerboard of
a transposed convolution) reach the network; no BatchNorm, so a score depends on its image alone. Trained with
Adam on batches augmented by blur and JPEG (each with probability 0.5, as Wang et al. 2020), classes weighted
equally; after each epoch the validation images (not augmented) are scored and the weights with the lowest
validation loss are kept; training stops after `patience` epochs without improvement.
"""

from __future__ import annotations

import copy
import time
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gankit import console
from gankit.checks import Field
from gankit.config import MAX_IMAGE_SIZE
from gankit.data import batches
from gankit.detect import perturb
from gankit.detect.base import Detector, prefixed, unprefixed
from gankit.detect.scores import balanced_log_loss, detection_metrics, labels_for
from gankit.errors import GankitError
from gankit.models.registry import eval_mode

DEFAULTS = {"epochs": 20, "patience": 3, "batch_size": 64, "lr": 1e-3, "augment_p": 0.5,
            "blur_sigma": list(perturb.BLUR_SIGMA), "jpeg_quality": list(perturb.JPEG_QUALITY)}


class SmallCNN(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(channels, 16, 3, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(16, 32, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(64 * 16, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).view(-1)


class CNNDetector(Detector):
    name = "cnn"
    options = tuple(DEFAULTS)
    SETTINGS = {"channels": Field(int, choices=(1, 3)), "image_size": Field(int, 8, MAX_IMAGE_SIZE),
                "epochs": Field(int, 1, 10**6), "patience": Field(int, 1, 10**6), "batch_size": Field(int, 1, 65536),
                "lr": Field(float, 0, 10), "augment_p": Field(float, 0, 1), "blur_sigma": Field(list, 0, 100),
                "jpeg_quality": Field(list, 0, 100), "best_epoch": Field(int, 0, 10**6, optional=True),
                "epochs_trained": Field(int, 0, 10**6, optional=True)}

    def __init__(self, settings: dict[str, Any]):
        super().__init__({**DEFAULTS, **settings})
        s = self.settings
        if not all(isinstance(s[k], int) and s[k] >= 1 for k in ("epochs", "patience", "batch_size")):
            raise GankitError(f"cnn epochs, patience and batch_size must be whole numbers >= 1, got "
                              f"{s['epochs']}, {s['patience']}, {s['batch_size']}")
        self.net = SmallCNN(s["channels"])

    @torch.no_grad()
    def scores(self, images: torch.Tensor) -> torch.Tensor:
        with eval_mode(self.net):
            return torch.cat([torch.sigmoid(self.net(batches.to_float(chunk))) for chunk in images.split(500)]
                             ) if len(images) else torch.zeros(0)

    def tensors(self) -> dict[str, torch.Tensor]:
        return prefixed("net", self.net.state_dict())

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        self.net.load_state_dict(unprefixed("net", tensors))

    def fit(self, real: torch.Tensor, fake: torch.Tensor, val_real: torch.Tensor, val_fake: torch.Tensor,
            seed: int = 0, log: Callable[[str], None] = console.silent) -> list[dict[str, Any]]:
        s = self.settings
        torch.manual_seed(seed)
        self.net = SmallCNN(s["channels"])
        images = torch.cat([real, fake])
        labels = torch.from_numpy(labels_for(len(real), len(fake))).float()
        weights = torch.where(labels > 0, len(images) / (2 * len(fake)), len(images) / (2 * len(real)))
        val_labels = labels_for(len(val_real), len(val_fake))
        opt = torch.optim.Adam(self.net.parameters(), lr=s["lr"])
        rng = torch.Generator().manual_seed(seed + 1)
        best, best_state, waited, history = float("inf"), None, 0, []
        start = time.perf_counter()
        for epoch in range(1, s["epochs"] + 1):
            loss = self._epoch(images, labels, weights, opt, rng)
            val_scores = self.scores(torch.cat([val_real, val_fake])).numpy()
            val_loss = balanced_log_loss(val_labels, val_scores)
            row = {"kind": "epoch", "epoch": epoch, "loss": round(loss, 5), "val_loss": round(val_loss, 5),
                   "val_auc": round(detection_metrics(val_labels, val_scores)["auc"], 5),
                   "seconds": round(time.perf_counter() - start, 2)}
            history.append(row)
            log(f"cnn epoch {epoch}: loss {loss:.4f}, validation loss {val_loss:.4f}, AUC {row['val_auc']:.4f}")
            if val_loss < best - 1e-4:
                best, best_state, waited = val_loss, copy.deepcopy(self.net.state_dict()), 0
                s["best_epoch"] = epoch
            else:
                waited += 1
                if waited >= s["patience"]:
                    break
        self.net.load_state_dict(best_state)
        s["epochs_trained"] = len(history)
        return history

    def _epoch(self, images: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor,
               opt: torch.optim.Optimizer, rng: torch.Generator) -> float:
        """One pass over the shuffled, augmented training images; the mean loss."""
        s = self.settings
        self.net.train()
        order = torch.randperm(len(images), generator=rng)
        losses = []
        for start in range(0, len(order), s["batch_size"]):
            index = order[start:start + s["batch_size"]]
            batch = perturb.augment(images[index], rng, s["augment_p"], tuple(s["blur_sigma"]),
                                    tuple(s["jpeg_quality"]))
            # minimize the class-balanced binary cross-entropy of "generated"
            loss = F.binary_cross_entropy_with_logits(self.net(batches.to_float(batch)), labels[index],
                                                      weight=weights[index])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return float(np.mean(losses))
