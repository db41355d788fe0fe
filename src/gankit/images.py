"""Image grids and PNG files: gankit tiles the grid (as torchvision's make_grid does, without importing
torchvision), Pillow writes it. Grayscale stays one channel on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def grid(images: torch.Tensor, nrow: int | None = None, padding: int = 2) -> torch.Tensor:
    """Tile N x C x H x W uint8 images into one C x H' x W' uint8 grid, about square by default: nrow images a
    row, `padding` black pixels around and between them (a single image is returned as it is)."""
    n, c, h, w = images.shape
    if n == 1:
        return images[0].cpu()
    cols = min(nrow or max(1, int(n ** 0.5)), n)
    rows = -(-n // cols)
    out = images.new_zeros((c, (h + padding) * rows + padding, (w + padding) * cols + padding), device="cpu")
    for k, image in enumerate(images.cpu()):
        top, left = (k // cols) * (h + padding) + padding, (k % cols) * (w + padding) + padding
        out[:, top:top + h, left:left + w] = image
    return out


def save_png(image: torch.Tensor, path: str | Path) -> None:
    """Write one C x H x W uint8 tensor (C = 1 or 3) as a PNG."""
    from PIL import Image

    array = image.detach().cpu().permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, format="PNG")


GRAY_MODES = ("1", "L", "LA", "I", "F")  # Pillow modes of one (gray) channel, besides 16-bit "I;16*"


def is_gray(mode: str) -> bool:
    """Whether a Pillow image mode holds one gray channel (alpha aside): such images stay 1-channel."""
    return mode in GRAY_MODES or mode.startswith("I;16")


def read_png(path: str | Path) -> torch.Tensor:
    """A PNG as a C x H x W uint8 tensor (C = 1 for grayscale files)."""
    from PIL import Image

    with Image.open(path) as im:
        array = np.asarray(im.convert("L" if is_gray(im.mode) else "RGB"))
    t = torch.from_numpy(array.copy())
    return t[None] if t.ndim == 2 else t.permute(2, 0, 1)


def save_gif(frames: list[torch.Tensor], path: str | Path, ms_per_frame: int = 200, loop: bool = True) -> None:
    """Write C x H x W uint8 frames (all the same size) as an animated GIF that loops forever."""
    from PIL import Image

    pictures = []
    for frame in frames:
        array = frame.detach().cpu().permute(1, 2, 0).numpy()
        pictures.append(Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array))
    pictures[0].save(path, format="GIF", save_all=True, append_images=pictures[1:], duration=ms_per_frame,
                     loop=0 if loop else 1)
