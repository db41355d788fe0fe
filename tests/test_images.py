"""gankit.images: grids written as files are enlarged by a whole factor, pixels repeated exactly."""

from __future__ import annotations

import torch
from PIL import Image

from gankit.images import read_png, save_grid, save_png, upscale
from gankit.report.plots import write_progress_gif
from gankit.run import layout

from .conftest import grid_scale


def test_save_grid_enlarges_a_small_grid_by_the_smallest_whole_factor(tmp_path):
    image = torch.randint(0, 256, (1, 10, 10), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    save_grid(image, tmp_path / "g.png")
    out = read_png(tmp_path / "g.png")
    assert out.shape == (1, 520, 520)  # 52 x 10: 51 x 10 = 510 would be under 512
    for y in range(520):  # every pixel is its source pixel, repeated 52 x 52 times: no blur, no blend
        assert torch.equal(out[0, y], image[0, y // 52].repeat_interleave(52))
    save_grid(image, tmp_path / "wide.png", min_width=30)
    assert read_png(tmp_path / "wide.png").shape == (1, 30, 30)


def test_save_grid_keeps_a_grid_that_is_wide_enough_and_its_colors(tmp_path):
    wide = torch.randint(0, 256, (3, 40, 600), dtype=torch.uint8)
    save_grid(wide, tmp_path / "wide.png")
    assert torch.equal(read_png(tmp_path / "wide.png"), wide)  # unchanged, RGB stays RGB
    assert upscale(wide) is wide
    exact = torch.randint(0, 256, (1, 8, 512), dtype=torch.uint8)
    assert upscale(exact) is exact  # 512 is wide enough
    rgb = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8)
    big = upscale(rgb)
    k = grid_scale(7)
    assert k == 74 and big.shape == (3, 5 * k, 7 * k) and torch.equal(big[:, ::k, ::k], rgb)
    assert torch.equal(big[:, k - 1::k, k - 1::k], rgb)  # the last copy of each pixel too


def test_save_grid_writes_a_jpeg_on_request(tmp_path):
    gray = torch.full((1, 62, 62), 200, dtype=torch.uint8)
    save_grid(gray, tmp_path / "g.jpg", jpeg=True)
    with Image.open(tmp_path / "g.jpg") as jpeg:
        k = grid_scale(62)
        assert jpeg.format == "JPEG" and jpeg.mode == "L" and jpeg.size == (62 * k, 62 * k)


def test_progress_gif_of_a_run_resumed_from_before_grids_were_enlarged(tmp_path):
    # epoch 1's grid was written at its own size; epoch 2's enlarged: the GIF's frames are all the larger size
    samples = tmp_path / layout.SAMPLES
    samples.mkdir()
    old = torch.randint(0, 256, (1, 62, 62), dtype=torch.uint8)
    save_png(old, samples / layout.epoch_grid(1))
    save_grid(old.flip(2), samples / layout.epoch_grid(2))
    out = write_progress_gif(tmp_path)
    k = grid_scale(62)
    with Image.open(out) as gif:
        assert gif.size == (62 * k, 62 * k) and gif.n_frames >= 2
        for frame in range(2):
            gif.seek(frame)
            assert gif.size == (62 * k, 62 * k)
