"""Gaussian blur and JPEG compression of uint8 images: the training augmentation of the cnn detector (each with
probability 0.5, blur sigma ~ U[0, 3], JPEG quality ~ U{30, ..., 100}, as Wang et al. 2020, "CNN-generated
images are surprisingly easy to spot... for now") and the robustness conditions of `gankit detect eval`.

Blur comes first, then JPEG, as in that paper. Blur is a separable Gaussian convolution with reflected borders,
one sigma per image; JPEG is Pillow's libjpeg round trip.
"""

from __future__ import annotations

import io
import math

import numpy as np
import torch
import torch.nn.functional as F

from gankit.errors import GankitError

BLUR_SIGMA = (0.0, 3.0)
JPEG_QUALITY = (30, 100)


def blur(images: torch.Tensor, sigma: torch.Tensor | float) -> torch.Tensor:
    """Gaussian blur of uint8 images N x C x H x W with one sigma per image (or one for all); sigma 0 keeps
    an image as it is. The kernel reaches 3 sigma (clipped to the image)."""
    n, c, h, w = images.shape
    sigma = torch.as_tensor(sigma, dtype=torch.float32).expand(n).clamp(min=0)
    if n == 0 or not bool((sigma > 0).any()):
        return images
    radius = min(int(math.ceil(3 * float(sigma.max()))), h - 1, w - 1)
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    kernel = torch.exp(-offsets.view(1, -1) ** 2 / (2 * sigma.clamp(min=1e-6).view(-1, 1) ** 2))
    kernel = kernel / kernel.sum(1, keepdim=True)  # sigma ~ 0: all weight on the centre tap
    x = images.float()
    # separable: along the width, then along the height; each image with its own kernel (unfold + einsum, which
    # is several times faster on the CPU than a convolution grouped by image)
    x = torch.einsum("nchwk,nk->nchw", F.pad(x, (radius, radius, 0, 0), mode="reflect").unfold(3, 2 * radius + 1, 1),
                     kernel)
    x = torch.einsum("nchwk,nk->nchw", F.pad(x, (0, 0, radius, radius), mode="reflect").unfold(2, 2 * radius + 1, 1),
                     kernel)
    return x.reshape(n, c, h, w).round_().clamp_(0, 255).to(torch.uint8)


def jpeg(images: torch.Tensor, quality: torch.Tensor | int) -> torch.Tensor:
    """JPEG-compress and decode uint8 images N x C x H x W (C 1 or 3) at one quality per image (or one for all),
    1-100, with Pillow's libjpeg (4:2:0 chroma subsampling for colour, its default)."""
    from PIL import Image

    quality = torch.as_tensor(quality, dtype=torch.long).expand(len(images)).tolist()
    arrays = images.permute(0, 2, 3, 1).contiguous().numpy()
    out = np.empty_like(arrays)
    for i, (array, q) in enumerate(zip(arrays, quality)):
        buffer = io.BytesIO()
        Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="JPEG", quality=int(q))
        buffer.seek(0)
        with Image.open(buffer) as decoded:
            out[i] = np.asarray(decoded).reshape(array.shape)
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


def check(jpeg_quality: int | None, blur_sigma: float | None) -> None:
    """One line for an impossible --jpeg or --blur."""
    if jpeg_quality is not None and not 1 <= jpeg_quality <= 100:
        raise GankitError(f"--jpeg takes a quality from 1 to 100, got {jpeg_quality}")
    if blur_sigma is not None and not 0 <= blur_sigma <= 20:
        raise GankitError(f"--blur takes a sigma from 0 to 20 pixels, got {blur_sigma}")


def perturb(images: torch.Tensor, jpeg_quality: int | None = None, blur_sigma: float | None = None) -> torch.Tensor:
    """The same degradation of every image: blur (sigma in pixels), then JPEG at this quality."""
    check(jpeg_quality, blur_sigma)
    if blur_sigma:
        images = blur(images, blur_sigma)
    if jpeg_quality is not None:
        images = jpeg(images, jpeg_quality)
    return images


def augment(images: torch.Tensor, generator: torch.Generator, p: float = 0.5,
            sigma: tuple[float, float] = BLUR_SIGMA, quality: tuple[int, int] = JPEG_QUALITY) -> torch.Tensor:
    """Wang et al.'s Blur+JPEG augmentation: each image is blurred with probability p (sigma ~ U[sigma]) and,
    independently, JPEG-compressed with probability p (quality ~ U{quality}), in that order."""
    n = len(images)
    blurred = torch.rand(n, generator=generator) < p
    sigmas = torch.empty(n).uniform_(*sigma, generator=generator) * blurred
    images = blur(images, sigmas)
    compressed = torch.rand(n, generator=generator) < p
    qualities = torch.randint(quality[0], quality[1] + 1, (n,), generator=generator)
    if bool(compressed.any()):
        images = images.clone()
        images[compressed] = jpeg(images[compressed], qualities[compressed])
    return images
