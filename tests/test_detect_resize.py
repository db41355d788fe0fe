"""`gankit detect score --resize`: pictures of another size than the detector's are resized (short side, then
the central square) and said to be; without the flag they are refused in one line that names --resize."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.data import loading, transforms
from gankit.detect import store
from gankit.detect.evaluation import score_files
from gankit.detect.methods import restore
from gankit.detect.training import train_detector
from gankit.errors import GankitError
from gankit.images import save_png

from .test_detect import _npy, _refused, synthetic
from .test_safety import _cli


@pytest.fixture(scope="module")
def spectrum(tmp_path_factory):
    """The cheapest detector the detect tests make: spectrum, on 100 real images and 100 fakes with a corner."""
    root = tmp_path_factory.mktemp("resize")
    images, labels = synthetic(100, 0)
    loading.write_pack(loading.ImageData(torch.from_numpy(images), torch.from_numpy(labels), ["l", "r"], "s"),
                       root / "real")
    fakes = _npy(root / "fakes.npy", synthetic(100, 1, corner=True)[0])
    return train_detector(f"packed:{root / 'real'}", [str(fakes)], "spectrum", root / "det", progress=False).path


def _pictures(folder):
    """Three 40x40 pictures, one 56x42 (not square) and one at the detector's 28x28, as PNG files."""
    folder.mkdir()
    small = torch.from_numpy(synthetic(5, 7)[0])
    files = []
    for i, (h, w) in enumerate([(40, 40), (40, 40), (40, 40), (42, 56), (28, 28)]):
        picture = torch.nn.functional.interpolate(small[i:i + 1].float(), size=(h, w), mode="nearest")
        files.append(folder / f"p{i}.png")
        save_png(picture[0].round().to(torch.uint8), files[-1])
    return files


def test_score_resizes_pictures_of_another_size_and_says_so(spectrum, tmp_path, capsys):
    files = _pictures(tmp_path / "pictures")
    code, out, err = _cli(capsys, "detect", "score", spectrum, *files, "--resize")
    lines = out.strip().splitlines()
    assert code == 0 and [line.split("\t")[0] for line in lines] == [str(f) for f in files]
    assert all(0 <= float(line.split("\t")[1]) <= 1 for line in lines)
    assert "resized 3 picture(s) from 40x40 and 1 from 56x42 to 28x28" in err and err.count("resized") == 1
    # each resized picture is scored as the folder reader makes it: resize_crop of the decoded uint8 picture
    stored = store.read(spectrum)
    detector = restore("spectrum", stored.config["settings"], stored.tensors)
    with Image.open(files[3]) as picture:
        decoded = torch.from_numpy(np.array(picture))[None, None]  # 1 x 1 x 42 x 56, uint8
    expected = float(detector.scores(transforms.resize_crop(decoded, 28))[0])
    assert float(lines[3].split("\t")[1]) == pytest.approx(expected, abs=1e-4)
    code, out, _ = _cli(capsys, "detect", "score", spectrum, *files, "--resize", "--json")
    rows = json.loads(out)
    assert code == 0 and [r.get("resized_from") for r in rows] == ["40x40", "40x40", "40x40", "56x42", None]
    # the library call says the same
    scores = score_files(spectrum, files, resize=True)
    assert [f for f, _ in scores] == [str(f) for f in files] and len(scores.resized) == 4
    assert scores.resized[str(files[3])] == (56, 42) and scores.notes[0].startswith("resized 3 picture(s)")
    assert score_files(spectrum, files[4:]).notes == []  # nothing resized, nothing said


def test_score_without_resize_refuses_another_size_naming_the_flag(spectrum, tmp_path, capsys):
    files = _pictures(tmp_path / "pictures")
    _refused(capsys, tmp_path, ["detect", "score", spectrum, files[4], files[0]], "--resize")
    _refused(capsys, tmp_path, ["detect", "score", spectrum, files[0]], "is 40x40 where the detector takes 28x28")
    _refused(capsys, tmp_path, ["detect", "score", spectrum, files[3]], "is 56x42")
    with pytest.raises(GankitError, match="--resize"):
        score_files(spectrum, files[:1])
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    _refused(capsys, tmp_path, ["detect", "score", spectrum, tmp_path / "broken.png", "--resize"], "cannot read")

