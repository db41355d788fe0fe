import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.images import read_png, save_png
from gankit.run import generator_file, layout

from .conftest import grid_scale, snapshot


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_png_grid(capsys, mlp_run, tmp_path):
    code, out, _ = run_cli(capsys, "generate", str(mlp_run), "-n", "9", "-o", str(tmp_path / "g.png"))
    assert code == 0 and "wrote 9 images" in out
    side = 3 * 30 + 2  # 3 x 3 images of 28x28 with 2 px padding, enlarged to at least 512 px wide
    k = grid_scale(side)
    assert k == 6 and read_png(tmp_path / "g.png").shape == (1, side * k, side * k)


def test_generate_jpeg_grid(capsys, mlp_run, tmp_path):
    from PIL import Image

    assert run_cli(capsys, "generate", str(mlp_run), "-n", "9", "-o", str(tmp_path / "g.png"))[0] == 0
    png = read_png(tmp_path / "g.png")
    for name in ("g.jpg", "g.JPEG"):
        code, out, _ = run_cli(capsys, "generate", str(mlp_run), "-n", "9", "-o", str(tmp_path / name))
        assert code == 0 and f"wrote 9 images to {tmp_path / name}" in out
        assert (tmp_path / name).read_bytes()[:3] == b"\xff\xd8\xff"  # the JPEG magic, not a PNG under a new name
        with Image.open(tmp_path / name) as jpeg:
            assert jpeg.format == "JPEG" and jpeg.mode == "L" and jpeg.size == (png.shape[2], png.shape[1])
            pixels = torch.from_numpy(np.asarray(jpeg).copy())
        assert (pixels.float() - png[0].float()).abs().mean() < 4  # the same picture, at quality 95
    code, _, err = run_cli(capsys, "generate", str(mlp_run), "-n", "9", "-o", str(tmp_path / "g.jpg"))
    assert code == 2 and "exists: pass --force" in err  # an existing JPEG is kept as a PNG is
    code, _, err = run_cli(capsys, "generate", str(mlp_run), "-o", str(tmp_path / "g.webp"))
    assert code == 2 and err.count("\n") == 1
    assert "must end in .png, .jpg or .jpeg (a grid) or .npy (an array), or be a directory" in err
    assert not (tmp_path / "g.webp").exists()


def test_generate_npy_is_seeded_and_in_range(capsys, dcgan_run, tmp_path):
    for name, seed in (("a.npy", "1"), ("b.npy", "1"), ("c.npy", "2")):
        out = str(tmp_path / name)
        assert run_cli(capsys, "generate", str(dcgan_run), "-n", "5", "-o", out, "--seed", seed)[0] == 0
    a, b, c = (np.load(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy"))
    assert a.shape == (5, 1, 28, 28) and a.dtype == np.float32
    assert a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generate_best_draws_from_best_safetensors(capsys, mlp_run, tmp_path):
    import shutil


    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    G, cfg = generator_file.load_generator(run)
    with torch.no_grad():
        for p in G.parameters():
            p.zero_()  # tanh(0): every pixel 0, unlike the trained last generator
    generator_file.export_generator(G, cfg, run, name=layout.BEST, epoch=1)
    for name, extra in (("last.npy", []), ("best.npy", ["--best"])):
        assert run_cli(capsys, "generate", str(run), "-n", "4", "-o", str(tmp_path / name), *extra)[0] == 0
    assert np.abs(np.load(tmp_path / "last.npy")).max() > 0.5
    assert not np.load(tmp_path / "best.npy").any()


def test_generate_directory_of_pngs(capsys, mlp_run, tmp_path):
    out = tmp_path / "imgs"
    assert run_cli(capsys, "generate", str(mlp_run), "-n", "12", "-o", str(out))[0] == 0
    files = sorted(out.glob("*.png"))
    assert [f.name for f in files][:2] == ["0000.png", "0001.png"] and len(files) == 12
    assert read_png(files[0]).shape == (1, 28, 28)


def test_generate_needs_only_the_export_and_config(capsys, mlp_run, tmp_path):
    import shutil

    slim = tmp_path / "slim"
    slim.mkdir()
    for name in ("config.toml", "generator.safetensors"):
        shutil.copy(mlp_run / name, slim / name)
    assert run_cli(capsys, "generate", str(slim), "-n", "4", "-o", str(tmp_path / "x.png"))[0] == 0
    grid = read_png(tmp_path / "x.png")
    side = 2 * 30 + 2  # 4 images of 28x28 with 2 px padding, each pixel repeated k x k times
    k = grid_scale(side)
    assert grid.shape == (1, side * k, side * k)
    assert torch.equal(grid, grid[:, ::k, ::k].repeat_interleave(k, 1).repeat_interleave(k, 2))
    # the same images as from the whole run (same seed): the export alone is the generator
    assert run_cli(capsys, "generate", str(mlp_run), "-n", "4", "-o", str(tmp_path / "full.png"))[0] == 0
    assert torch.equal(grid, read_png(tmp_path / "full.png"))
    assert run_cli(capsys, "generate", str(slim), "-n", "4", "-o", str(tmp_path / "x.npy"))[0] == 0
    images = torch.from_numpy(np.load(tmp_path / "x.npy"))
    assert images.shape == (4, 1, 28, 28) and images.min() >= -1 and images.max() <= 1
    assert images.std() > 0.05 and (images[0] - images[1]).abs().max() > 0.01  # pictures, and not one picture
    small = grid[:, ::k, ::k]
    tiles = [small[:, 2 + 30 * r:30 * r + 30, 2 + 30 * c:30 * c + 30] for r in range(2) for c in range(2)]
    expected = images.add(1).mul(127.5).round().clamp(0, 255).to(torch.uint8)
    assert all((tile.int() - img.int()).abs().max() <= 1 for tile, img in zip(tiles, expected))


def test_data_command_describes_and_saves_grid(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "mnist5k", "-n", "16", "-o", str(tmp_path / "real.png"))
    assert code == 0
    assert "images: 5000" in out and "classes: 10" in out
    side = 4 * 30 + 2
    k = grid_scale(side)
    assert k == 5 and read_png(tmp_path / "real.png").shape == (1, side * k, side * k)


def test_data_grid_is_replaced_only_with_force(capsys, tmp_path):
    out = tmp_path / "real.png"
    out.write_bytes(b"precious")
    code, text, err = run_cli(capsys, "data", "mnist5k", "-n", "4", "-o", str(out))
    assert code == 2 and text == "" and out.read_bytes() == b"precious"
    assert err.count("\n") == 1 and f"{out} exists: pass --force to replace it" in err
    code, text, _ = run_cli(capsys, "data", "mnist5k", "-n", "4", "-o", str(out), "--force")
    assert code == 0 and f"grid of 4 real images: {out}" in text
    side = 2 * 30 + 2
    k = grid_scale(side)
    assert read_png(out).shape == (1, side * k, side * k)
    assert [p.name for p in tmp_path.iterdir()] == ["real.png"]  # no temporary file left beside it


def test_data_grid_default_name_is_not_overwritten(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_cli(capsys, "data", "mnist5k", "-n", "4")[0] == 0
    first = (tmp_path / "data_mnist5k.png").read_bytes()
    code, _, err = run_cli(capsys, "data", "mnist5k", "-n", "9")
    assert code == 2 and "data_mnist5k.png exists: pass --force" in err
    assert (tmp_path / "data_mnist5k.png").read_bytes() == first


@pytest.mark.parametrize("argv,message", [
    (["train", "--preset", "nope"], "invalid choice: 'nope'"),
    (["train", "--set", "lr=0"], "lr must be > 0"),
    (["train", "--set", "batch_size=0"], "batch_size must be >= 1"),
    (["train", "--set", "colour=red"], "unknown config key 'colour'"),
    (["train", "--image-size", "50"], "dcgan model makes images of size"),
    (["train", "--data", "imagenet"], "unknown data source 'imagenet'"),
    (["train", "--data", "folder:/no/such/dir"], "image folder not found"),
    (["train", "--resume", "/no/such/run"], "run directory not found"),
    (["train", "--resume", "RUN", "--preset", "dcgan"], "cannot be combined with --resume"),
    (["generate", "/no/such/run", "-o", "x.png"], "run directory not found"),
    (["generate", "RUN", "-o", "x.bmp"], "must end in .png, .jpg or .jpeg"),
    (["generate", "RUN", "-n", "0", "-o", "x.png"], "-n must be a whole number >= 1"),
    (["data", "mnist"], "put train-images-idx3-ubyte"),
    (["train", "--set", "eval_every=-1"], "eval_every must be >= 0"),
    (["train", "--set", "early_stop=two"], "early_stop"),
    (["evaluate", "/no/such/run"], "run directory not found"),
    (["evaluate", "RUN", "-n", "3"], "-n (fakes measured) must be a whole number >= 10"),
    (["evaluate", "RUN", "--evaluator", "/no/such.safetensors"], "evaluator not found"),
    (["report", "/no/such/run"], "run directory not found"),
    (["classifier", "predict", "/no/such.png", "--evaluator", "/no/such.safetensors"], "evaluator not found"),
    (["classifier", "train", "--data", "imagenet"], "unknown data source"),
])
def test_bad_input_exits_2_with_one_line(capsys, mlp_run, tmp_path, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GANKIT_DATA_DIR", str(tmp_path / "data"))
    argv = [str(mlp_run) if a == "RUN" else a for a in argv]
    before = snapshot(mlp_run)
    if argv[1] == "--preset" and argv[2] == "nope":
        with pytest.raises(SystemExit) as exc:
            main(argv)
        code, err = exc.value.code, capsys.readouterr().err
    else:
        code, _, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    assert snapshot(mlp_run) == before
    assert not (tmp_path / "runs").exists()


def test_train_into_existing_run_refuses(capsys, mlp_run):
    before = snapshot(mlp_run)
    code, _, err = run_cli(capsys, "train", "--out", str(mlp_run), "--set", "subset=64", "--no-progress")
    assert code == 2 and "already exists" in err
    assert snapshot(mlp_run) == before


def test_console_script_trains_and_resumes(tmp_path):
    run = tmp_path / "run"
    exe = [sys.executable, "-m", "gankit"]
    base = ["train", "--preset", "simple-gan", "--out", str(run), "--epochs", "1", "--set", "subset=64",
            "--no-progress"]
    done = subprocess.run(exe + base, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "trained 1 epochs (2 steps)" in done.stdout and str(run) in done.stdout
    # then what to do with the run, its real path in each command, after the summary
    lines = done.stdout.splitlines()
    assert lines.index("what next:") > next(i for i, line in enumerate(lines) if line.startswith("trained 1 epochs"))
    commands = [line.split("#")[0].strip() for line in lines[lines.index("what next:") + 1:]]
    assert commands == [f"gankit generate {run} -o samples.png", f"gankit report {run}", f"gankit evaluate {run}",
                        f"tensorboard --logdir {run / layout.TENSORBOARD}"]
    assert (run / layout.TENSORBOARD).is_dir() and "what next" not in done.stderr
    again = subprocess.run(exe + ["train", "--resume", str(run), "--epochs", "2", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "trained 2 epochs (4 steps)" in again.stdout
    bad = subprocess.run(exe + ["train", "--resume", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"gankit: error: run directory not found: {tmp_path / 'missing'}"


def test_evaluate_prints_a_table_or_json_and_records_it(capsys, mlp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    code, out, _ = run_cli(capsys, "evaluate", str(run), "-n", "200")
    assert code == 0
    assert "real vs real" in out and "FD" in out and "precision" in out and "classes >= 5%" in out
    code, out, _ = run_cli(capsys, "evaluate", str(run), "-n", "200", "--json", "--best")
    result = json.loads(out)
    assert result["generator"] == "best" and result["epoch"] == 1 and result["step"] == 8
    assert result["fd"] > result["floor"]["fd"] >= 0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["generator"] for r in rows if r.get("source") == "evaluate"] == ["generator", "best"]


def test_report_command_writes_html(capsys, mlp_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    code, out, _ = run_cli(capsys, "report", str(run))
    assert code == 0 and (run / "report.html").is_file() and "report.html" in out
    import base64
    import html
    import io
    import re

    from PIL import Image

    page = (run / "report.html").read_text(encoding="utf-8")
    text = html.unescape(page)
    for section in ("Losses", "Quality during training", "Samples", "Health", "Config"):
        assert section in text, section
    # embedded images, each a PNG: the loss curves, the metric curves and the sample grids
    embedded = [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)]
    assert len(embedded) >= 3 and all(png.startswith(b"\x89PNG") for png in embedded)
    pictures = [np.asarray(Image.open(io.BytesIO(png))) for png in embedded]
    grid = read_png(run / "samples" / "epoch_001.png")[0].numpy()
    assert any(p.shape == grid.shape and np.array_equal(p, grid) for p in pictures)  # the last epoch's grid
    # the config, every line of it
    for line in (run / "config.toml").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            assert line in text, line
    # the latest evaluation: the run's numbers and the real-vs-real floor
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    last = [r for r in rows if r["kind"] == "eval"][-1]
    for value in (last["fd"], last["floor"]["fd"], last["kid"], last["spread"]):
        assert f"{value:.4g}" in text, value


def test_classifier_train_and_predict(capsys, tmp_path, monkeypatch):
    from gankit.data.loading import load
    from gankit.quality import classifier as clf
    from gankit.quality import evaluator as ev

    held_out = []
    real_train = clf.train_classifier
    monkeypatch.setattr(clf, "train_classifier", lambda *a, **k: held_out.append(k["val_idx"]) or real_train(*a, **k))
    out = tmp_path / "digits.safetensors"
    code, text, _ = run_cli(capsys, "classifier", "train", "--data", "mnist5k", "--epochs", "1", "--out", str(out))
    assert code == 0 and out.is_file() and "validation accuracy" in text
    # held out like the cached evaluator, so it is a valid --evaluator: the floor's half is new to it
    assert torch.equal(held_out[0], ev.halves(load("mnist5k"))[1])
    digits = load("mnist5k")
    paths = []
    for label in (0, 7):
        path = tmp_path / f"d{label}.png"
        save_png(digits.images[digits.labels == label][0], path)
        paths.append(str(path))
    code, text, _ = run_cli(capsys, "classifier", "predict", *paths, "--evaluator", str(out))
    assert code == 0
    lines = [line.split("\t") for line in text.strip().splitlines()]
    assert [line[0] for line in lines] == paths
    assert [line[1] for line in lines] == ["0", "7"] and all(0 < float(line[2]) <= 1 for line in lines)


@pytest.mark.parametrize("argv, message", [
    (["--set", "loss=wgan"], "unknown loss 'wgan'"),
    (["--set", "n_critic=-1"], "n_critic must be >= 0"),
    (["--set", "loss=lsgan", "--set", "r1_gamma=1"], "r1_gamma works with loss bce or hinge"),
    (["--set", "loss=hinge", "--set", "label_smoothing=0.1"], "label_smoothing works with loss bce only"),
    (["--set", "loss=wgan-gp", "--set", "d_norm=batch"], "use d_norm=layer or none"),
    (["--set", "d_norm=instance"], "d_norm must be one of"),
    (["--set", "ema=1.5"], "ema must be 0 (off) or a decay in [0.5, 1)"),
    (["--set", "diffaug=zoom"], "unknown diffaug policy 'zoom'"),
    (["--set", "spectral_norm=maybe"], "expects bool"),
    (["--set", "conditional=2"], "config key 'conditional' expects true, false or auto, got '2'"),
    (["--set", "lr_d=-1"], "lr_d must be >= 0"),
    (["--set", "gp_lambda=-1"], "gp_lambda must be >= 0"),
    (["--set", "time_limit=-5"], "time_limit must be >= 0"),
    (["--set", "d_width=0"], "g_width and d_width must be in (0, 16]"),
    (["--set", "d_channels=16,32"], "d_channels for the dcgan discriminator at 28x28 takes 3 positive whole numbers"),
    (["--set", "d_channels=16,x,64"], "takes 3 positive whole numbers separated by commas (its own: 16,64,256)"),
    (["--set", "d_channels=16,0,64"], "takes 3 positive whole numbers"),
    (["--preset", "simple-gan", "--set", "d_channels=64,64"], "mlp discriminator at 28x28 takes 1 positive"),
])
def test_bad_option_values_exit_2_with_one_line(tmp_path, capsys, argv, message):
    assert main(["train", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()


def _run_gankit(code: str) -> subprocess.CompletedProcess:
    """A fresh interpreter that sets something up (`code`), then runs the `gankit` command's entry point."""
    # buffered output, as a terminal-less `gankit` has it (PYTHONUNBUFFERED would hide a missing flush)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)


def test_the_command_exits_quickly_yet_runs_exit_handlers_and_flushes(tmp_path):
    setup = ("import atexit, sys, torch\nfrom gankit.cli import run\n"
             "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
             "class Torn:\n    def __del__(self):\n        print('torn down', file=sys.stderr)\n"
             "kept = Torn()\nprint('unflushed', end='')\n")
    done = _run_gankit(setup + f"run(['generate', {str(tmp_path / 'none')!r}, '-o', {str(tmp_path / 'x.png')!r}])")
    assert done.returncode == 2 and "gankit: error:" in done.stderr  # main's exit code, through os._exit
    assert "handler ran" in done.stderr and done.stdout == "unflushed"
    assert "torn down" not in done.stderr  # the interpreter's teardown was skipped
    usage = _run_gankit(setup + "run(['generate'])")  # argparse's own exit: the usual shutdown
    assert usage.returncode == 2 and "torn down" in usage.stderr


def test_the_command_waits_for_a_thread_still_at_work(tmp_path):
    done = _run_gankit("import threading, time, torch\nfrom gankit.cli import run\n"
                       "threading.Thread(target=lambda: (time.sleep(0.5), print('thread done'))).start()\n"
                       f"run(['generate', {str(tmp_path / 'none')!r}, '-o', {str(tmp_path / 'x.png')!r}])")
    assert done.returncode == 2 and "thread done" in done.stdout


def test_a_file_where_a_folder_is_needed_is_named(tmp_path, capsys):
    (tmp_path / "t.sh").write_text("echo hi\n")
    assert main(["data", "mnist5k", "--pack", str(tmp_path / "t.sh" / "sub")]) == 2
    err = capsys.readouterr().err
    assert err == f"gankit: error: {tmp_path / 't.sh'} is a file where a folder is needed (nothing was written there)\n"
    assert (tmp_path / "t.sh").read_text() == "echo hi\n" and sorted(p.name for p in tmp_path.iterdir()) == ["t.sh"]


# Mutation pass: both streams flushed, closed ones tolerated, daemon threads not waited for, `python -m gankit` alike.
TORN = ("import atexit, os, sys, threading, time, torch\nfrom gankit.cli import run\n"
        "atexit.register(lambda: print('handler ran', file=sys.stderr))\n"
        "class Torn:\n    def __del__(self):\n        print('torn down', file=sys.stderr)\n"
        "kept = Torn()\n")


def _missing_run(tmp_path) -> str:
    return f"run(['generate', {str(tmp_path / 'none')!r}, '-o', {str(tmp_path / 'x.png')!r}])"


def test_the_quick_exit_flushes_a_partial_line_on_either_stream(tmp_path):
    last = ("import atexit, sys\n"
            "atexit.register(lambda: (print('out', end=''), print('err', end='', file=sys.stderr)))\n")
    done = _run_gankit(last + TORN + _missing_run(tmp_path))  # the exit handler registered first runs last
    assert done.returncode == 2 and done.stdout == "out" and done.stderr.endswith("handler ran\nerr")
    assert "torn down" not in done.stderr


@pytest.mark.parametrize("closing", [
    "r, w = os.pipe()\nos.close(r)\nos.dup2(w, 1)\nos.close(w)\n",  # a reader that has gone (`| head`)
    "sys.stdout.close()\n",
], ids=["broken-pipe", "closed-stream"])
def test_the_quick_exit_survives_a_stdout_that_cannot_be_flushed(tmp_path, closing):
    done = _run_gankit(TORN + "print('lost', end='')\n" + closing + _missing_run(tmp_path))
    assert done.returncode == 2 and "gankit: error:" in done.stderr and "handler ran" in done.stderr
    assert "Traceback" not in done.stderr and "torn down" not in done.stderr, done.stderr


def test_a_daemon_thread_does_not_hold_up_the_quick_exit(tmp_path):
    # (tqdm's monitor is one: a daemon thread is never waited for, so it need not be)
    done = _run_gankit(TORN + "threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
                       + _missing_run(tmp_path))
    assert done.returncode == 2 and "handler ran" in done.stderr and "torn down" not in done.stderr


def test_python_m_gankit_exits_as_the_command_does(tmp_path):
    argv = ["gankit", "generate", str(tmp_path / "none"), "-o", str(tmp_path / "x.png")]
    done = _run_gankit(TORN + f"import runpy\nsys.argv = {argv!r}\nrunpy.run_module('gankit', run_name='__main__')\n")
    assert done.returncode == 2 and "gankit: error:" in done.stderr and "handler ran" in done.stderr
    assert "torn down" not in done.stderr
