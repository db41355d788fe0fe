"""The simple-GAN tutorial's networks, exactly: fully connected, LeakyReLU(0.1), one hidden layer each
(256 units in G, 128 in D; `g_width` / `d_width` scale them, `d_channels` replaces D's)."""

from __future__ import annotations

import math

import torch
from torch import nn

from gankit.errors import GankitError
from gankit.models.widths import scaled


class MLPGenerator(nn.Module):
    """z -> Linear(z, 256) -> LeakyReLU(0.1) -> Linear(256, C*H*W) -> Tanh, reshaped to C x H x W."""

    def __init__(self, z_dim: int, shape: tuple[int, int, int], hidden: int = 256):
        super().__init__()
        self.shape = shape
        self.net = nn.Sequential(
            nn.Linear(z_dim, hidden),
            nn.LeakyReLU(0.1),
            nn.Linear(hidden, math.prod(shape)),
            nn.Tanh(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).view(z.shape[0], *self.shape)


class MLPDiscriminator(nn.Module):
    """C*H*W -> Linear(., 128) -> LeakyReLU(0.1) -> Linear(128, 1): one logit per image (no sigmoid).

    `body` (features) and `head` (the last Linear) are separate so a projection head can reuse the features.
    """

    def __init__(self, shape: tuple[int, int, int], hidden: int = 128):
        super().__init__()
        self.body = nn.Sequential(nn.Flatten(), nn.Linear(math.prod(shape), hidden), nn.LeakyReLU(0.1))
        self.head = nn.Linear(hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).view(-1)


def d_channels(image_size: int) -> tuple[int, ...]:  # noqa: ARG001 - the registry's interface
    """The discriminator's hidden units at width 1 (what `d_channels=""` means)."""
    return (128,)


def build(z_dim: int, channels: int, image_size: int, d_norm: str = "batch", g_width: float = 1.0,  # noqa: ARG001 - the registry's interface
          d_width: float = 1.0, d_widths: tuple[int, ...] = ()) -> tuple[nn.Module, nn.Module]:
    """d_norm is accepted for the registry's sake: the tutorial's MLP discriminator has no normalization."""
    shape = (channels, image_size, image_size)
    (g_hidden,), (d_hidden,) = scaled((256,), g_width), scaled(d_widths or d_channels(image_size), d_width)
    return MLPGenerator(z_dim, shape, g_hidden), MLPDiscriminator(shape, d_hidden)


MAX_SIZE = 256  # 256 x 256 x 3 pixels: ~75 million weights in G and D; past that, use a convolutional model


def check_size(image_size: int) -> None:
    """Any size up to MAX_SIZE works: the MLP only sees a flat vector, but its weights grow with its square."""
    if image_size > MAX_SIZE:
        raise GankitError(f"the mlp model's weights grow with the pixel count: image_size must be <= {MAX_SIZE}, "
                          f"got {image_size} (use model=dcgan for larger images)")
