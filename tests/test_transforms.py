"""gankit.data.transforms and images.grid compute what torchvision computes, pixel for pixel, without importing it."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from PIL import Image

from gankit.data import folders, loading, transforms
from gankit.images import grid

TF = pytest.importorskip("torchvision.transforms.v2.functional")


def _random(shape, seed=0) -> torch.Tensor:
    return torch.randint(0, 256, shape, generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


# (height, width) -> square size: down and up, portrait and landscape, odd sizes, crop offsets of 6.5 and 7.5
SIZES = [((28, 28), 64), ((64, 64), 28), ((37, 53), 32), ((53, 37), 32), ((100, 61), 28), ((20, 33), 64),
         ((480, 640), 64), ((31, 32), 28), ((9, 250), 8), ((28, 43), 28)]


@pytest.mark.parametrize("native", [True, False], ids=["uint8-kernel", "float-kernel"])
@pytest.mark.parametrize("hw, size", SIZES)
def test_resize_crop_equals_torchvision(hw, size, native, monkeypatch):
    # torchvision resizes uint8 natively on AVX2/AVX-512/ARM CPUs and through float32 elsewhere: both paths
    monkeypatch.setattr(transforms, "_native_uint8", lambda images: native)
    capability = "AVX2" if native else "DEFAULT"
    monkeypatch.setattr(torch.backends.cpu, "get_cpu_capability", lambda: capability)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    for channels in (1, 3):
        batch = _random((3, channels, *hw), seed=size)
        want = TF.center_crop(TF.resize(batch, [size], antialias=True), [size, size])
        got = transforms.resize_crop(batch, size)
        assert got.shape == want.shape == (3, channels, size, size)
        assert torch.equal(got, want)
        assert torch.equal(transforms.resize_crop(batch[0], size), want[0])  # one C x H x W image


def test_a_single_pil_image_like_read_image(tmp_path):
    # read_image's path: a decoded PIL image (HWC memory seen as CHW) to a tensor, resized and cropped
    for mode, channels in (("L", 1), ("RGB", 3)):
        array = _random((45, 70, channels), seed=channels).numpy()
        image = Image.fromarray(array[:, :, 0] if channels == 1 else array, mode)
        ours = transforms.pil_to_tensor(image)
        theirs = TF.pil_to_tensor(image)
        assert torch.equal(ours, theirs)
        want = TF.center_crop(TF.resize(theirs, [32], antialias=True), [32, 32])
        assert torch.equal(transforms.resize_crop(ours, 32), want)
        path = tmp_path / f"{mode}.png"
        image.save(path)
        assert torch.equal(folders.read_image(path, 32), want)


def test_grayscale_equals_torchvision():
    batch = _random((4, 3, 9, 11))
    assert torch.equal(transforms.rgb_to_grayscale(batch), TF.rgb_to_grayscale(batch))
    assert torch.equal(loading.fit(batch, 9, 1), TF.rgb_to_grayscale(TF.center_crop(batch, [9, 9])))


def test_crop_refuses_a_window_larger_than_the_image():
    with pytest.raises(ValueError, match="cannot crop 8 x 8 from 4 x 9"):
        transforms.center_crop(_random((1, 4, 9)), 8)


@pytest.mark.parametrize("n, nrow", [(1, None), (2, None), (7, None), (16, None), (10, 10), (13, 4), (3, 8)])
def test_grid_equals_make_grid(n, nrow):
    from torchvision.utils import make_grid

    for channels in (1, 3):
        images = _random((n, channels, 5, 6), seed=n)
        tiled = make_grid(images, nrow=nrow or max(1, int(n ** 0.5)), padding=2)
        assert torch.equal(grid(images, nrow), tiled[:1] if channels == 1 else tiled)


def test_resizing_a_folder_imports_no_torchvision(tmp_path):
    # the whole folder path (decode, resize, crop, grayscale, grid) in a fresh interpreter
    for i in range(3):
        Image.fromarray(_random((40, 30, 3), seed=i).numpy()).save(tmp_path / f"{i}.png")
    code = ("import sys; from gankit import images; from gankit.data import loading; "
            f"ds = loading.load('folder:{tmp_path}', image_size=28, channels=1); images.grid(ds.images); "
            "assert ds.images.shape == (3, 1, 28, 28), ds.images.shape; "
            "bad = sorted(m for m in sys.modules if m.split('.')[0] == 'torchvision' or m == 'torch._dynamo'); "
            "assert not bad, bad")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
