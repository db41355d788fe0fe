"""DCGAN networks.

28x28: the DCGAN-on-MNIST project's stack, layer for layer, except that D's two later layers are wider
(16-64-256 channels instead of 16-32-64; `d_channels=16,32,64` is the project's D): measured on mnist5k, the
same 20 epochs reach a ~25% lower FD for ~20% more time (BENCHMARKS.md, sixth round).
32x32 and 64x64: the standard DCGAN stack (Radford et al. 2015) for RGB folders: 4x4 kernels, stride 2,
channel width halving (G) or doubling (D) per resolution step.
`g_width` / `d_width` scale every layer's channels (1 = the published widths); `d_channels` replaces D's.
All weights N(0, 0.02), BatchNorm scales N(1, 0.02), as in the DCGAN paper.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gankit.errors import GankitError
from gankit.models.widths import scaled

SIZES = (28, 32, 64)


class ConvTranspose2d(nn.ConvTranspose2d):
    """nn.ConvTranspose2d (same parameters, same function) with two faster paths for the generator's ends.

    oneDNN's deconvolution is slow for the two cheapest layers of a DCGAN generator on the CPU (measured on a
    2-core EPYC, batch 128: noise projection 18 ms -> 4 ms, image layer 27 ms -> 15 ms, forward + backward):
    - a 1x1 input (the noise projection) is exactly one matmul with the weight seen as (C_in, C_out*k*k);
    - with few output channels (the image layer), a matmul to columns plus col2im (F.fold) on the CPU.
    """

    def forward(self, x: torch.Tensor, output_size=None) -> torch.Tensor:  # noqa: D102
        simple = (output_size is None and self.groups == 1 and self.dilation == (1, 1)
                  and self.output_padding == (0, 0) and self.kernel_size[0] == self.kernel_size[1])
        n, c, h, w = x.shape
        k, (s, p) = self.kernel_size[0], (self.stride[0], self.padding[0])
        if simple and h == w == 1 and p == 0:
            out = (x.reshape(n, c) @ self.weight.reshape(c, -1)).view(n, self.out_channels, k, k)
        elif simple and x.device.type == "cpu" and self.out_channels <= 4 and self.stride[0] == self.stride[1]:
            cols = x.permute(0, 2, 3, 1).reshape(n * h * w, c) @ self.weight.reshape(c, -1)
            size = ((h - 1) * s - 2 * p + k, (w - 1) * s - 2 * p + k)
            out = F.fold(cols.view(n, h * w, -1).transpose(1, 2), size, kernel_size=k, stride=s, padding=p)
        else:
            return super().forward(x, output_size)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)


class Conv2d(nn.Conv2d):
    """nn.Conv2d (same parameters, same function) that computes a kernel covering its whole unpadded input (the
    discriminator's last layer, 5x5 features -> 1x1) as the single matmul it is: oneDNN's convolution is ~2x
    slower there, forward and backward, on the CPU."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # noqa: D102
        if (x.shape[2:] == self.kernel_size and self.padding == (0, 0) and self.groups == 1
                and self.dilation == (1, 1) and x.device.type == "cpu"):
            # both in (H, W, C) order: a free view of a channels_last input
            w = self.weight.permute(0, 2, 3, 1).reshape(self.out_channels, -1)
            out = F.linear(x.permute(0, 2, 3, 1).reshape(x.shape[0], -1), w, self.bias)
            return out.view(x.shape[0], self.out_channels, 1, 1)
        return super().forward(x)


def _g_block(cin: int, cout: int, k: int, s: int, p: int = 0) -> list[nn.Module]:
    return [ConvTranspose2d(cin, cout, k, s, p, bias=False), nn.BatchNorm2d(cout), nn.ReLU(True)]


def _d_block(cin: int, cout: int, k: int, s: int, p: int = 0, norm: str = "batch") -> list[nn.Module]:
    """Conv -> normalization -> LeakyReLU(0.2). norm: batch, layer (GroupNorm with one group: LayerNorm over
    C x H x W with a per-channel affine, for critics that must treat each sample alone) or none."""
    layers: list[nn.Module] = [Conv2d(cin, cout, k, s, p, bias=norm == "none")]
    if norm == "batch":
        layers.append(nn.BatchNorm2d(cout))
    elif norm == "layer":
        layers.append(nn.GroupNorm(1, cout))
    layers.append(nn.LeakyReLU(0.2, True))
    return layers


class DCGANGenerator(nn.Module):
    def __init__(self, z_dim: int, channels: int, image_size: int, width: float = 1.0):
        super().__init__()
        self.z_dim = z_dim
        if image_size == 28:
            # noise(z x 1 x 1) -> 3x3 -> 6x6 -> 13x13 -> 28x28, 256 -> 128 -> 64 channels
            a, b, c = scaled((256, 128, 64), width)
            layers = (_g_block(z_dim, a, 3, 2) + _g_block(a, b, 4, 1) + _g_block(b, c, 3, 2)
                      + [ConvTranspose2d(c, channels, 4, 2), nn.Tanh()])
        else:
            # noise -> 4x4 -> 8x8 -> ... -> image_size, widths halving towards the image (64 at the last)
            steps = {32: 3, 64: 4}[image_size]
            chans = scaled(tuple(64 * 2 ** (steps - 1 - i) for i in range(steps)), width)
            layers = _g_block(z_dim, chans[0], 4, 1, 0)
            for cin, cout in zip(chans, chans[1:]):
                layers += _g_block(cin, cout, 4, 2, 1)
            layers += [ConvTranspose2d(chans[-1], channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z.view(z.shape[0], self.z_dim, 1, 1))


def d_channels(image_size: int) -> tuple[int, ...]:
    """The discriminator's conv layer widths at width 1 (what `d_channels=""` means)."""
    return (16, 64, 256) if image_size == 28 else tuple(64 * 2 ** i for i in range({32: 3, 64: 4}[image_size]))


class DCGANDiscriminator(nn.Module):
    """`body` maps images to a feature vector, `head` (one Linear) to a logit; a projection head reuses body."""

    def __init__(self, channels: int, image_size: int, width: float = 1.0, norm: str = "batch",
                 widths: tuple[int, ...] = ()):
        super().__init__()
        chans = scaled(widths or d_channels(image_size), width)
        if image_size == 28:
            # 28x28 -> 13x13 -> 5x5 -> 1x1 (3x3, 5x5, 5x5 kernels, stride 2) -> Linear -> one logit
            a, b, c = chans
            layers = (_d_block(channels, a, 3, 2, norm=norm) + _d_block(a, b, 5, 2, norm=norm)
                      + _d_block(b, c, 5, 2, norm=norm) + [nn.Flatten()])
            features = c
        else:
            # image_size -> ... -> 4x4, widths doubling from 64; no normalization on the first block; then the
            # standard 4x4 conv to one logit, written as the Linear it equals on a 4x4 input
            layers = _d_block(channels, chans[0], 4, 2, 1, norm="none")
            for cin, cout in zip(chans, chans[1:]):
                layers += _d_block(cin, cout, 4, 2, 1, norm=norm)
            layers += [nn.Flatten()]
            features = chans[-1] * 16
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(features, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x)).view(-1)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv and linear weights N(0, 0.02); BatchNorm scale N(1, 0.02), shift 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.GroupNorm)):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


def build(z_dim: int, channels: int, image_size: int, d_norm: str = "batch", g_width: float = 1.0,
          d_width: float = 1.0, d_widths: tuple[int, ...] = ()) -> tuple[nn.Module, nn.Module]:
    check_size(image_size)
    g = DCGANGenerator(z_dim, channels, image_size, g_width)
    d = DCGANDiscriminator(channels, image_size, d_width, norm=d_norm, widths=d_widths)
    init_weights(g)
    init_weights(d)
    return g, d


def check_size(image_size: int) -> None:
    if image_size not in SIZES:
        raise GankitError(f"the dcgan model makes images of size {', '.join(map(str, SIZES))}, "
                          f"not {image_size}: set image_size to one of them (or use model=mlp)")
