"""Model registry: a name maps to a module with build(z_dim, channels, image_size) -> (G, D) and check_size.

A new architecture is one module plus one line here.
"""

from __future__ import annotations

import contextlib
from types import ModuleType

from torch import nn

from . import dcgan, mlp

MODELS: dict[str, ModuleType] = {"mlp": mlp, "dcgan": dcgan}


def build(name: str, z_dim: int, channels: int, image_size: int) -> tuple[nn.Module, nn.Module]:
    """(generator, discriminator) for a registered architecture; G maps (N, z_dim) noise to images in [-1, 1]."""
    return MODELS[name].build(z_dim, channels, image_size)


def build_generator(name: str, z_dim: int, channels: int, image_size: int) -> nn.Module:
    return build(name, z_dim, channels, image_size)[0]


@contextlib.contextmanager
def eval_mode(module: nn.Module):
    """Run a block with `module` in eval mode (BatchNorm running stats, no dropout), then restore its mode."""
    was_training = module.training
    module.eval()
    try:
        yield module
    finally:
        module.train(was_training)
