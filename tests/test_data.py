import math

import numpy as np
import pytest
import torch
from PIL import Image

from gankit import GankitError
from gankit.data import loading
from gankit.data.batches import Batches, augment, to_float, to_uint8
from gankit.data.loading import load

from .conftest import digit_like, write_cifar, write_idx


def test_mnist5k_is_embedded_and_balanced():
    ds = load("mnist5k")
    assert ds.images.shape == (5000, 1, 28, 28) and ds.images.dtype == torch.uint8
    assert torch.bincount(ds.labels).tolist() == [500] * 10
    assert ds.images.max() == 255 and ds.images.min() == 0
    # real digits: mostly black background with a bright stroke in the middle
    assert ds.images.float().mean() < 60
    assert ds.images[:, :, 10:18, 10:18].float().mean() > 2 * ds.images[:, :, :4, :].float().mean()


def test_subset_is_spread_over_classes():
    ds = load("mnist5k", subset=200)
    assert len(ds) == 200
    assert (torch.bincount(ds.labels, minlength=10) > 5).all()  # the CSV is sorted by class


def _label_from_pixels(image: torch.Tensor) -> int:
    """digit_like's label, read back from where its bright square is (rows 2 + 8 * (y // 5), cols 2 + 5 * (y % 5))."""
    rows, cols = torch.nonzero(image.squeeze(0) > 100, as_tuple=True)
    return 5 * ((int(rows.min()) - 2) // 8) + (int(cols.min()) - 2) // 5


def test_subset_keeps_each_image_with_its_label(tmp_path):
    images, labels = digit_like(300)
    order = np.random.default_rng(1).permutation(300)  # labels in no pattern: a misaligned subset shows
    images, labels = images[order], labels[order]
    assert [_label_from_pixels(torch.from_numpy(img)) for img in images] == labels.tolist()
    write_idx(tmp_path / "MNIST" / "raw", images, labels)
    ds = load("mnist", tmp_path, subset=120)
    assert len(ds) == 120 and ds.labels.shape == (120,)
    assert [_label_from_pixels(img) for img in ds.images] == ds.labels.tolist()
    assert len(set(ds.labels.tolist())) == 10


@pytest.mark.parametrize("source,folder", [("mnist", "MNIST"), ("fashion-mnist", "FashionMNIST")])
def test_idx_sources_read_from_data_dir(tmp_path, source, folder):
    images, labels = digit_like(30)
    write_idx(tmp_path / folder / "raw", images, labels)
    ds = load(source, tmp_path)
    assert ds.images.shape == (30, 1, 28, 28)
    assert torch.equal(ds.images[:, 0], torch.from_numpy(images))
    assert ds.labels.tolist() == labels.tolist()
    assert len(ds.classes) == 10


def test_cifar10_reads_python_batches(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    write_cifar(tmp_path, n_per_batch=4)
    # the test files cannot match the real archive's md5 sums; the reading path is what is tested here
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)
    ds = load("cifar10", tmp_path, image_size=32)
    assert ds.images.shape == (20, 3, 32, 32)
    assert ds.classes[0] == "airplane" and ds.labels.shape == (20,)
    fit = load("cifar10", tmp_path, image_size=28, channels=1)
    assert fit.images.shape == (20, 1, 28, 28)


@pytest.mark.parametrize("source,folder,first", [("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
                                                 ("cifar10", "cifar-10-batches-py", "data_batch_1")])
def test_missing_dataset_names_files_and_folder(tmp_path, source, folder, first):
    with pytest.raises(GankitError) as err:
        load(source, tmp_path)
    message = str(err.value)
    assert first in message and str(tmp_path / folder) in message and "\n" not in message


def _png(path, size=(40, 30), mode="L", value=128):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new(mode, size, value if mode == "L" else (value, 20, 200)).save(path)


def test_folder_flat_grayscale(tmp_path):
    for i in range(5):
        _png(tmp_path / f"img{i}.png", value=50 * i)
    ds = load(f"folder:{tmp_path}", image_size=28)
    assert ds.images.shape == (5, 1, 28, 28)
    assert ds.labels is None and ds.classes is None
    assert sorted(ds.images[:, 0, 14, 14].tolist()) == [0, 50, 100, 150, 200]


def test_folder_class_subfolders_rgb_resized_and_cropped(tmp_path):
    _png(tmp_path / "cats" / "a.png", size=(80, 40), mode="RGB")
    _png(tmp_path / "cats" / "b.jpg", size=(64, 64), mode="RGB")
    _png(tmp_path / "dogs" / "c.png", size=(20, 50), mode="L")
    ds = load(f"folder:{tmp_path}", image_size=32)
    assert ds.images.shape == (3, 3, 32, 32)  # one RGB image makes the set RGB
    assert ds.classes == ["cats", "dogs"] and ds.labels.tolist() == [0, 0, 1]
    assert ds.images[0, :, 16, 16].tolist() == [128, 20, 200]


def test_folder_counts_corrupt_files(tmp_path):
    _png(tmp_path / "good.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("ignored: not an image extension")
    ds = load(f"folder:{tmp_path}")
    assert len(ds) == 1 and ds.skipped == 2
    assert "skipped 2 unreadable file(s): broken.png, empty.jpg" in ds.describe()


def test_folder_errors(tmp_path):
    with pytest.raises(GankitError, match="image folder not found"):
        load(f"folder:{tmp_path / 'nope'}")
    with pytest.raises(GankitError, match="no images in"):
        load(f"folder:{tmp_path}")
    (tmp_path / "bad.png").write_bytes(b"junk")
    with pytest.raises(GankitError, match="none of the 1 image files"):
        load(f"folder:{tmp_path}")


def test_unknown_source():
    with pytest.raises(GankitError, match="unknown data source 'imagenet'"):
        load("imagenet")


def test_float_conversion_round_trips():
    x = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16)
    f = to_float(x)
    assert f.min() == -1 and f.max() == 1
    assert torch.equal(to_uint8(f), x)


def test_rotation_fills_black_and_keeps_shape():
    x = torch.ones(8, 1, 28, 28)  # an all-white image
    g = torch.Generator().manual_seed(0)
    y = augment(x, rotation=20, hflip=False, generator=g)
    assert y.shape == x.shape
    assert y[:, :, 0, 0].max() < 1  # corners rotated in from outside are (partly) black
    assert torch.allclose(y[:, :, 14, 14], torch.ones(8, 1))  # the center stays white
    assert y.min() >= -1 - 1e-6


def test_rotation_angle_is_bounded():
    x = -torch.ones(64, 1, 29, 29)
    x[:, :, 14, 2:27] = 1  # a horizontal bar
    y = augment(x, rotation=20, hflip=False, generator=torch.Generator().manual_seed(1))
    # the bar's end at 12 px from the center moves at most 12 * sin(20 deg) ~ 4.1 px vertically
    ends = y[:, 0, :, 26]
    rows = ends.argmax(dim=1).float()
    assert ((rows - 14).abs() <= math.ceil(12 * math.sin(math.radians(20)))).all()
    assert (rows != 14).any()


def test_hflip_flips_some():
    x = torch.zeros(64, 1, 4, 4)
    x[..., 0] = 1
    y = augment(x, rotation=0, hflip=True, generator=torch.Generator().manual_seed(0))
    flipped = (y[..., 3] == 1).all(dim=(1, 2))
    assert 10 < flipped.sum() < 54
    assert torch.equal(y[~flipped], x[~flipped])


def test_batches_drop_last_and_deterministic_epochs():
    images = torch.arange(100, dtype=torch.uint8).view(100, 1, 1, 1).expand(100, 1, 2, 2).contiguous()
    b = Batches(images, batch_size=32, seed=3)
    assert len(b) == 3
    first = [x[:, 0, 0, 0] for x, _ in b.epoch(0)]
    again = [x[:, 0, 0, 0] for x, _ in b.epoch(0)]
    other = [x[:, 0, 0, 0] for x, _ in b.epoch(1)]
    assert len(first) == 3 and all(x.shape == (32,) for x in first)
    assert all(torch.equal(a, c) for a, c in zip(first, again))
    assert not torch.equal(first[0], other[0])
    values = torch.cat(first)
    assert values.unique().numel() == 96  # no image twice in an epoch


def test_batches_refuse_too_little_data():
    with pytest.raises(GankitError, match="fewer than one batch"):
        Batches(torch.zeros(10, 1, 28, 28, dtype=torch.uint8), 32, 0)


def test_describe_lists_classes():
    text = load("mnist5k").describe()
    assert "images: 5000" in text and "1 x 28 x 28" in text and "0 (500)" in text


def test_default_data_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GANKIT_DATA_DIR", str(tmp_path))
    assert loading.default_data_dir() == tmp_path


def test_damaged_cifar10_files_are_one_clear_error(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    write_cifar(tmp_path, n_per_batch=4)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"\x80\x04truncated")
    monkeypatch.setattr(tvd.CIFAR10, "_check_integrity", lambda self: True)
    monkeypatch.setattr(tvd.cifar, "check_integrity", lambda *args, **kwargs: True)
    with pytest.raises(GankitError, match="damaged"):
        load("cifar10", tmp_path)
