"""Resize, center-crop and grayscale uint8 image tensors with torch alone.

torchvision's tensor kernels compute exactly this (tests/test_transforms.py checks every function against
torchvision.transforms.v2.functional pixel for pixel), but any `import torchvision...` runs torchvision's
__init__, which imports its model zoo, its detection ops and with them torch._dynamo: about 1.3 s of every
command that decodes a folder or resizes a dataset.
"""

from __future__ import annotations

import platform

import numpy as np
import torch
import torch.nn.functional as F


def _native_uint8(images: torch.Tensor) -> bool:
    """Whether torch's antialiased bilinear kernel takes uint8 as it is: on a CPU with AVX2/AVX-512 or on ARM.
    Elsewhere torchvision resizes in float32 and rounds, and so does `resize`."""
    return images.device.type == "cpu" and (torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")
                                            or platform.machine() in ("aarch64", "arm64"))


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images (..., C, H, W): the short side to `size`, the long side in proportion (rounded down);
    bilinear with antialiasing, as torchvision's resize(images, [size], antialias=True)."""
    h, w = images.shape[-2:]
    new_h, new_w = (int(size * h / w), size) if w <= h else (size, int(size * w / h))
    if (new_h, new_w) == (h, w):
        return images
    batch = images.reshape(-1, *images.shape[-3:])
    if batch.numel():
        native = _native_uint8(batch)
        batch = F.interpolate(batch if native else batch.float(), size=[new_h, new_w], mode="bilinear",
                              align_corners=False, antialias=True)
        if not native:
            batch = batch.round_().to(images.dtype)
    return batch.reshape(*images.shape[:-2], new_h, new_w)


def center_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window of (..., H, W) images at least that large (offsets rounded as
    torchvision's center_crop rounds them)."""
    h, w = images.shape[-2:]
    if size > h or size > w:
        raise ValueError(f"cannot crop {size} x {size} from {h} x {w}")
    top, left = int(round((h - size) / 2.0)), int(round((w - size) / 2.0))
    return images[..., top:top + size, left:left + size]


def resize_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """The short side to `size`, then the central square."""
    return center_crop(resize(images, size), size)


def rgb_to_grayscale(images: torch.Tensor) -> torch.Tensor:
    """(..., 3, H, W) -> (..., 1, H, W): ITU-R 601-2 luma, truncated back to the input's dtype."""
    r, g, b = images.unbind(dim=-3)
    luma = r.mul(0.2989).add_(g, alpha=0.587).add_(b, alpha=0.114)
    return luma.unsqueeze(-3).to(images.dtype)


def pil_to_tensor(image) -> torch.Tensor:
    """A decoded PIL image (mode L or RGB) as a C x H x W uint8 tensor."""
    array = np.array(image, copy=True)
    return torch.from_numpy(array).view(image.size[1], image.size[0], len(image.getbands())).permute(2, 0, 1)
