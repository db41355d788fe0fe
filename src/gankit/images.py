"""Image grids and PNG files: gankit tiles the grid (as torchvision's make_grid does, without importing
torchvision), Pillow writes it. Grayscale stays one channel on disk. A grid written as a file is first
enlarged by a whole factor (save_grid), so that a grid of 28x28 pictures is big enough to look at."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch

from gankit.errors import GankitError
from gankit.files import MAX_IMAGE_BYTES, open_regular


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


def parse_background(text: str) -> tuple[int, int, int] | None:
    """What a folder's transparent pixels are composited onto: a color as Pillow names them ("white", "black",
    "#80c0ff", "rgb(0, 64, 0)") as (r, g, b), or None for "none" (the alpha is dropped: the stored colors
    as they are, which for palette images is often a color nobody meant to show)."""
    from PIL import ImageColor

    if text.strip().lower() == "none":
        return None
    try:
        rgb = ImageColor.getrgb(text.strip())
        if not all(0 <= v <= 255 for v in rgb):  # Pillow reads rgb(300, 0, 0) as it is written
            raise ValueError
    except ValueError:
        raise GankitError(f"background must be a color (white, black, #rrggbb, rgb(r, g, b) of 0 to 255) or none, "
                          f"got '{text}'") from None
    return rgb[0], rgb[1], rgb[2]


def save_jpeg(image: torch.Tensor, path: str | Path, quality: int = 95) -> None:
    """Write one C x H x W uint8 tensor (C = 1 or 3) as a JPEG."""
    from PIL import Image

    array = image.detach().cpu().permute(1, 2, 0).numpy()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(path, format="JPEG", quality=quality)


MIN_GRID_WIDTH = 512  # pixels: a grid file narrower than this is enlarged (an 8x8 grid of 28x28 is 242 wide)


def upscale(image: torch.Tensor, min_width: int = MIN_GRID_WIDTH) -> torch.Tensor:
    """A C x H x W image enlarged by the smallest whole factor k that makes it at least min_width wide, each
    pixel repeated k times on both axes (nearest neighbour, no blur); k = 1 (the image itself) when it is
    already wide enough."""
    k = max(1, -(-min_width // image.shape[-1]))
    return image if k == 1 else image.repeat_interleave(k, dim=-2).repeat_interleave(k, dim=-1)


def save_grid(grid: torch.Tensor, path: str | Path, min_width: int = MIN_GRID_WIDTH, jpeg: bool = False) -> None:
    """Write a C x H x W uint8 grid as a PNG (or a JPEG of quality 95), enlarged by upscale(grid, min_width)."""
    (save_jpeg if jpeg else save_png)(upscale(grid, min_width), path)


GRAY_MODES = ("1", "L", "LA", "I", "F")  # Pillow modes of one (gray) channel, besides 16-bit "I;16*"


def is_gray(mode: str) -> bool:
    """Whether a Pillow image mode holds one gray channel (alpha aside): such images stay 1-channel."""
    return mode in GRAY_MODES or mode.startswith("I;16")


MAX_READ_PIXELS = 2**27  # a PNG's declared width x height, checked before it is decoded (~11,600 px square)


def read_png(path: str | Path) -> torch.Tensor:
    """A PNG as a C x H x W uint8 tensor (C = 1 for grayscale files); read through files.open_regular (a FIFO or
    a folder there is one line, never a wait)."""
    from PIL import Image

    with warnings.catch_warnings():  # the size is checked here, before anything is decoded
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with open_regular(path, MAX_IMAGE_BYTES) as fh, Image.open(fh) as im:
                if im.width * im.height > MAX_READ_PIXELS:
                    raise Image.DecompressionBombError
                array = np.asarray(im.convert("L" if is_gray(im.mode) else "RGB"))
        except Image.DecompressionBombError:
            raise GankitError(f"{path} declares more than {MAX_READ_PIXELS:,} pixels (the most gankit decodes): "
                              "not a picture gankit wrote") from None
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
