"""What every detection method is: a `Detector` scores uint8 images with a probability of "generated".

A method is one subclass plus one line in `gankit.detect.methods.METHODS`. Its settings (plain values, written to
detector.toml) and its tensors (written to detector.safetensors) are all it needs to be rebuilt.
"""

from __future__ import annotations

from typing import Any, Callable

import torch

from gankit import console
from gankit.checks import Field


class Detector:
    """Scores images; `fit` trains it on real and fake images (methods that train), `tensors` saves it."""

    name = ""
    trains = True  # False: nothing is fitted (the discriminator of a run)
    options: tuple[str, ...] = ()  # settings a user may choose (train_detector's **settings)
    # what each setting in detector.toml must be, checked when a detector folder is read (gankit.detect.store)
    SETTINGS: dict[str, Field] = {}

    def __init__(self, settings: dict[str, Any]):
        self.settings = dict(settings)

    def fit(self, real: torch.Tensor, fake: torch.Tensor, val_real: torch.Tensor, val_fake: torch.Tensor,
            seed: int = 0, log: Callable[[str], None] = console.silent) -> list[dict[str, Any]]:
        """Train on uint8 real and fake images; the validation images decide early stopping or regularization.
        Returns per-epoch (or per-choice) records for metrics.jsonl."""
        raise NotImplementedError

    def scores(self, images: torch.Tensor) -> torch.Tensor:
        """P(generated) for each uint8 image N x C x H x W: float32 in [0, 1], on the CPU."""
        raise NotImplementedError

    def tensors(self) -> dict[str, torch.Tensor]:
        """Everything learned, as named CPU tensors (safetensors)."""
        raise NotImplementedError

    def load(self, tensors: dict[str, torch.Tensor]) -> None:
        """Restore what `tensors` returned."""
        raise NotImplementedError


def prefixed(prefix: str, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A state dict under a prefix, as contiguous CPU tensors (safetensors wants both)."""
    return {f"{prefix}.{k}": v.detach().cpu().contiguous() for k, v in state.items()}


def unprefixed(prefix: str, tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The entries of tensors under prefix, with the prefix removed."""
    return {k[len(prefix) + 1:]: v for k, v in tensors.items() if k.startswith(prefix + ".")}
