import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from gankit.cli import main
from gankit.images import read_png, save_png

from .conftest import snapshot


def run_cli(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_generate_png_grid(capsys, mlp_run, tmp_path):
    code, out, _ = run_cli(capsys, "generate", str(mlp_run), "-n", "9", "-o", str(tmp_path / "g.png"))
    assert code == 0 and "wrote 9 images" in out
    assert read_png(tmp_path / "g.png").shape == (1, 3 * 30 + 2, 3 * 30 + 2)


def test_generate_npy_is_seeded_and_in_range(capsys, dcgan_run, tmp_path):
    for name, seed in (("a.npy", "1"), ("b.npy", "1"), ("c.npy", "2")):
        assert run_cli(capsys, "generate", str(dcgan_run), "-n", "5", "-o", str(tmp_path / name), "--seed", seed)[0] == 0
    a, b, c = (np.load(tmp_path / n) for n in ("a.npy", "b.npy", "c.npy"))
    assert a.shape == (5, 1, 28, 28) and a.dtype == np.float32
    assert a.min() >= -1 and a.max() <= 1
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_generate_best_draws_from_best_safetensors(capsys, mlp_run, tmp_path):
    import shutil

    from gankit import checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    G, cfg = ckpt.load_generator(run)
    with torch.no_grad():
        for p in G.parameters():
            p.zero_()  # tanh(0): every pixel 0, unlike the trained last generator
    ckpt.export_generator(G, cfg, run, name=ckpt.BEST, epoch=1)
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


def test_data_command_describes_and_saves_grid(capsys, tmp_path):
    code, out, _ = run_cli(capsys, "data", "mnist5k", "-n", "16", "-o", str(tmp_path / "real.png"))
    assert code == 0
    assert "images: 5000" in out and "classes: 10" in out
    assert read_png(tmp_path / "real.png").shape == (1, 4 * 30 + 2, 4 * 30 + 2)


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
    (["generate", "RUN", "-o", "x.jpg"], "must end in .png"),
    (["generate", "RUN", "-n", "0", "-o", "x.png"], "-n must be >= 1"),
    (["data", "mnist"], "put train-images-idx3-ubyte"),
    (["train", "--set", "eval_every=-1"], "eval_every must be >= 0"),
    (["train", "--set", "early_stop=two"], "early_stop"),
    (["evaluate", "/no/such/run"], "run directory not found"),
    (["evaluate", "RUN", "-n", "3"], "-n must be >= 10"),
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
    again = subprocess.run(exe + ["train", "--resume", str(run), "--epochs", "2", "--no-progress"],
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert "trained 2 epochs (4 steps)" in again.stdout
    bad = subprocess.run(exe + ["train", "--resume", str(tmp_path / "missing")], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.strip() == f"gankit: error: run directory not found: {tmp_path / 'missing'}"


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


def test_classifier_train_and_predict(capsys, tmp_path, monkeypatch):
    from gankit import classifier as clf
    from gankit import evaluator as ev
    from gankit.data import load

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
