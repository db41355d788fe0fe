"""`gankit generate`: latent walks, --best, and its bad options."""

from __future__ import annotations

import pytest
import torch
from PIL import Image

from gankit.cli import main

from .conftest import grid_scale


def test_interpolation_rows_are_straight_walks_and_gif(tmp_path, mlp_run, capsys):
    out = tmp_path / "walk.npy"
    assert main(["generate", str(mlp_run), "--interpolate", "5", "-n", "3", "-o", str(out), "--gif"]) == 0
    import numpy as np

    frames = torch.from_numpy(np.load(out)).view(3, 5, 1, 28, 28)
    assert torch.allclose(frames[0, -1], frames[1, 0], atol=1e-5)  # walk r ends where walk r + 1 starts
    assert not torch.allclose(frames[0, 0], frames[0, -1])
    from gankit.inference.generate import latent_walks

    z = latent_walks(3, 5, 64)
    assert torch.allclose(z[0, 2], (z[0, 0] + z[0, 4]) / 2, atol=1e-6)  # a straight line
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 5 + 3  # there and back
        k = grid_scale(30 + 2)  # the 3 walks' frames in one column, enlarged to at least 512 px as grids are
        assert gif.size == (32 * k, (3 * 30 + 2) * k)
    assert main(["generate", str(mlp_run), "--interpolate", "4", "-o", str(tmp_path / "w.png")]) == 0
    with Image.open(tmp_path / "w.png") as png:
        k = grid_scale(4 * 30 + 2)  # default 8 walks, one per row, enlarged to at least 512 px wide
        assert png.size == ((4 * 30 + 2) * k, (8 * 30 + 2) * k)


def test_generate_best_without_evaluations_says_why(tmp_path, capsys, mlp_run):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    (run / "best.safetensors").unlink()
    assert main(["generate", str(run), "--best", "-o", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err.strip()
    assert "kept by the evaluations during training" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("extra, message", [
    (["--class", "3"], "--class needs a conditional run"),
    (["--interpolate", "1"], "at least 2 frames"),
    (["--gif"], "--gif animates a latent walk"),
])
def test_bad_generate_options(tmp_path, capsys, mlp_run, extra, message):
    assert main(["generate", str(mlp_run), "-o", str(tmp_path / "x.png"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.png").exists()


def test_generate_rejects_a_bad_device(tmp_path, capsys, mlp_run):
    assert main(["generate", str(mlp_run), "-o", str(tmp_path / "x.png"), "--device", "gpu0"]) == 2
    assert "--device must be auto, cpu or cuda[:N]" in capsys.readouterr().err
