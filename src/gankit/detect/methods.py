"""The detection methods by name: a new method is one `Detector` subclass plus one line here."""

from __future__ import annotations

from typing import Any

import torch

from gankit.detect.base import Detector
from gankit.detect.cnn import CNNDetector
from gankit.detect.discriminator import DiscriminatorDetector
from gankit.detect.linear import ProbeDetector, SpectrumDetector
from gankit.errors import GankitError

METHODS: dict[str, type[Detector]] = {
    "cnn": CNNDetector,  # a small CNN from scratch, blur + JPEG augmentation (Wang et al. 2020)
    "probe": ProbeDetector,  # frozen evaluator (or Inception) features + logistic regression (Ojha et al. 2023)
    "spectrum": SpectrumDetector,  # radial log power spectrum + logistic regression (Durall et al. 2020)
    "discriminator": DiscriminatorDetector,  # the run's own D, nothing trained
}


def check_method(name: str) -> type[Detector]:
    if name not in METHODS:
        raise GankitError(f"unknown detection method {name!r}: choose from {', '.join(METHODS)}")
    return METHODS[name]


def restore(method: str, settings: dict[str, Any], tensors: dict[str, torch.Tensor]) -> Detector:
    """A saved detector rebuilt from its settings (detector.toml) and tensors (detector.safetensors)."""
    detector = check_method(method)(settings)
    try:
        detector.load(tensors)
    except RuntimeError as exc:  # load_state_dict: a missing, unexpected or misshapen weight
        raise GankitError(f"its weights do not fit a {method} detector ({str(exc).splitlines()[0][:160]})") from None
    return detector
