"""Issue 25, classes 4, 5, 6, 8 and 9 (part): every value read from a file is checked for type, range and shape
before anything uses it (gankit.checks, gankit.weights); every size that allocates is bounded in one table
(config.LIMITS); the API checks its arguments as the CLI does; no library warning reaches the user."""

from __future__ import annotations

import io
import json
import shutil
import struct
import warnings
import zlib

import pytest
import torch
from safetensors.torch import load_file, save_file

import gankit
from gankit import config
from gankit.cli import main
from gankit.detect import store
from gankit.detect.roc import plot_roc
from gankit.errors import GankitError
from gankit.images import read_png, save_png
from gankit.quality import classifier as clf
from gankit.report.plots import plot_metric_curves, write_progress_gif
from gankit.run import checkpoint, generator_file
from gankit.training.launch import train

from .conftest import snapshot, tiny_config


def _one_line(capsys, code: int, *words: str) -> str:
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    for word in words:
        assert word in err, err
    return err


def _png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds almost none (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


# ---------------------------------------------------------------------------------------------- checkpoints
@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("crafted") / "run"
    train(tiny_config(subset=64, ema=0.9, eval_every=0), run, progress=False)
    return run


def _set(*path_and_value):
    *path, value = path_and_value

    def change(state):
        target = state
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value(target[path[-1]]) if callable(value) else value
    return change


@pytest.mark.parametrize("change, message", [
    (_set("ema", "updates", -10), "its EMA state: 'updates' must be a whole number in [0, "),
    (_set("quality", {"best_fd": "12.5", "best_epoch": 1}), "its quality record: 'best_fd' must be a number"),
    (_set("quality", {"since_best": -3}), "'since_best' must be a whole number in [0, "),
    (_set("fixed_noise", lambda t: t.double()), "fixed noise is a torch.float64 tensor"),
    (_set("fixed_noise", lambda t: t.fill_(float("nan"))), "its fixed noise holds NaN or infinite values"),
    (_set("generator", "net.0.weight", lambda t: t.fill_(float("nan"))),
     "its generator entry 'net.0.weight' holds NaN or infinite values"),
    (_set("ema", "model", "net.0.weight", lambda t: t.fill_(float("inf"))), "its EMA generator entry 'net.0.weight'"),
    (_set("discriminator", "head.weight", lambda t: t.to(torch.complex64)),
     "its discriminator entry 'head.weight' holds complex64 values, not real numbers"),
    (_set("generator", "net.0.weight", lambda t: t.to(torch.int32)),
     "its generator entry 'net.0.weight' holds int32 values where the model holds float32"),
])
def test_a_crafted_checkpoint_value_is_refused_at_load_before_anything_is_written(ema_run, tmp_path, capsys, change,
                                                                                   message):
    run = tmp_path / "run"
    shutil.copytree(ema_run, run)
    state = checkpoint.load_checkpoint(run)
    change(state)
    checkpoint.save_checkpoint(state, run)
    before = snapshot(run)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # torch's "discards the imaginary part" never reaches the user
        code = main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"])
    _one_line(capsys, code, "cannot be resumed", message)
    assert snapshot(run) == before  # metrics.jsonl, config.toml and the checkpoint untouched


# ---------------------------------------------------------------------------------------------- exported generators
def _rewrite_export(run, change_tensors=None, meta=None):
    path = run / "generator.safetensors"
    tensors = load_file(str(path))
    if change_tensors:
        change_tensors(tensors)
    save_file(tensors, str(path), metadata=meta)


@pytest.mark.parametrize("meta", [{"gankit": "[1, 2]"}, {"gankit": '{"epoch": "$x$", "step": -4}'}])
def test_export_metadata_that_is_no_object_or_holds_wrong_types_is_ignored(mlp_run, tmp_path, meta):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    _rewrite_export(run, meta=meta)
    g = gankit.load(run)
    assert g.epoch is None and g.step is None and generator_file.export_info(run).get("epoch") is None


@pytest.mark.parametrize("change, message", [
    (lambda t: t["net.0.weight"].fill_(float("nan")), "holds NaN or infinite values"),
    (lambda t: t.__setitem__("net.0.weight", t["net.0.weight"].to(torch.complex64)), "holds complex64 values"),
    (lambda t: t.__setitem__("net.0.weight", t["net.0.weight"].mul(100).to(torch.int64)),
     "holds int64 values where the model holds float32"),
    (lambda t: t.__setitem__("net.0.weight", t["net.0.weight"] > 0), "holds bool values where the model holds float"),
])
def test_an_exported_generator_with_nan_or_complex_weights_is_one_line(mlp_run, tmp_path, capsys, change, message):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    _rewrite_export(run, change)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["generate", str(run), "-o", str(tmp_path / "g.png")])
    _one_line(capsys, code, "generator.safetensors entry 'net.0.weight'", message)
    assert not (tmp_path / "g.png").exists()


# ---------------------------------------------------------------------------------------------- figures and samples
def test_strings_from_files_never_reach_mathtext_and_uneven_roc_lists_are_left_out():
    good = {"roc": {"fpr": [0.0, 0.5, 1.0], "tpr": [0.0, 0.8, 1.0]}, "auc": 0.8}
    uneven = {"roc": {"fpr": [0.0, 1.0], "tpr": [0.0, 0.5, 1.0]}}
    assert plot_roc([(r"$\frac{$", good)], io.BytesIO(), r"$^{x$ (cnn)")  # a parse error under mathtext
    assert not plot_roc([("uneven", uneven), ("words", {"roc": {"fpr": ["a"], "tpr": ["b"]}})], io.BytesIO())


def test_report_figures_hold_values_at_the_edges_without_warnings(tmp_path):
    rows = [{"kind": "eval", "source": "train", "epoch": e, "fd": fd, "precision": 0.5, "evaluator": ev}
            for e, fd, ev in ((1, 3.0, "a"), (2, 0.0, "b"), (3, -1.0, "b"))]
    rows[-1]["epoch"] = r"$\sqrt{$"  # the suptitle names the epoch the evaluator changed
    rows[1]["epoch"] = r"$\sqrt{$"
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # matplotlib's "Data has no positive values" on a log scale
        assert plot_metric_curves(tmp_path / "metrics.jsonl", io.BytesIO())


def test_a_stray_grid_and_a_bomb_grid_in_samples_are_left_out_of_report_and_gif(mlp_run, tmp_path, capsys):
    run = tmp_path / "run"
    shutil.copytree(mlp_run, run)
    samples = run / "samples"
    shutil.copy(next(samples.glob("epoch_*.png")), samples / "epoch_best.png")
    (samples / "epoch_000.png").write_bytes(_png_header(20_000, 20_000))  # 400 Mpixel
    with pytest.raises(GankitError, match="declares more than"):
        read_png(samples / "epoch_000.png")
    assert write_progress_gif(run) == run / "progress.gif"
    assert "leaves out epoch_000.png" in capsys.readouterr().err
    assert main(["report", str(run)]) == 0
    assert "last: epoch 1" in (run / "report.html").read_text()


# ---------------------------------------------------------------------------------------------- detectors
def _detector(tmp_path, config=None, settings=None, tensors=None, trained_on=None):
    """A spectrum detector folder made by hand (28x28 gray: 20 spectrum features)."""
    head = {"head.mean": torch.zeros(20, dtype=torch.float64), "head.scale": torch.ones(20, dtype=torch.float64),
            "head.coef": torch.ones(20, dtype=torch.float64), "head.intercept": torch.tensor(0.0, dtype=torch.float64)}
    cfg = {"method": "spectrum", "channels": 1, "image_size": 28,
           "settings": {"channels": 1, "image_size": 28, "C": 1.0, **(settings or {})}, **(config or {})}
    out = store.write(tmp_path / "det", cfg, {**head, **(tensors or {})},
                      {"trained": True, "fakes": [], "real": {}, **(trained_on or {})}, [])
    return out


@pytest.mark.parametrize("kwargs, message", [
    ({"settings": {"channels": "x"}}, "'channels' must be one of 1, 3, got 'x'"),
    ({"config": {"channels": 10**9}}, "'channels' must be one of 1, 3, got 1000000000"),
    ({"config": {"image_size": 100_000}}, "'image_size' must be a whole number in [8, 1024]"),
    ({"trained_on": {"fakes": 5}}, "'fakes' must be a list"),
    ({"tensors": {"head.coef": torch.full((20,), float("nan"), dtype=torch.float64)}}, "holds NaN"),
    ({"tensors": {"head.coef": torch.ones(7, dtype=torch.float64)}}, "logistic head does not fit together"),
    ({"tensors": {"head.mean": torch.zeros(7, dtype=torch.float64), "head.scale": torch.ones(7, dtype=torch.float64),
                  "head.coef": torch.ones(7, dtype=torch.float64)}}, "its logistic head takes 7 features"),
])
def test_a_crafted_detector_is_one_line_in_report_and_score(tmp_path, capsys, kwargs, message):
    det = _detector(tmp_path, **kwargs)
    image = tmp_path / "x.png"
    save_png(torch.zeros(1, 28, 28, dtype=torch.uint8), image)
    codes = [main(["report", str(det)]), main(["detect", "score", str(det), str(image)])]
    err = capsys.readouterr().err
    assert 2 in codes and message in err and err.count("\n") == codes.count(2), err


def test_detect_score_refuses_a_decompression_bomb_in_one_line_without_pillows_warning(tmp_path, capsys):
    det = _detector(tmp_path)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(_png_header(10_000, 10_000))  # 100 Mpixel: past Pillow's warning, short of its error
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        code = main(["detect", "score", str(det), str(bomb)])
    _one_line(capsys, code, "declares 10000x10000 pixels")


# ---------------------------------------------------------------------------------------------- an --evaluator file
def _evaluator(tmp_path, spec=None, change=None):
    model = clf.Classifier(clf.ClassifierSpec(channels=1, image_size=28, classes=["a", "b"]))
    path = clf.save_classifier(model, tmp_path / "ev.safetensors")
    tensors = load_file(str(path))
    if change:
        change(tensors)
    meta = {"channels": 1, "image_size": 28, "classes": ["a", "b"], **(spec or {})}
    save_file(tensors, str(path), metadata={"gankit_classifier": json.dumps(meta)})
    return path


@pytest.mark.parametrize("spec, change, message", [
    ({"classes": ["a", "b", "c"]}, None, "its weights do not fit the network its metadata describes"),
    ({"channels": 10**9}, None, "'channels' must be one of 1, 3"),
    ({"classes": 5}, None, "'classes' must be a list"),
    (None, lambda t: t.__setitem__("head.1.bias", t["head.1.bias"].to(torch.complex64)), "holds complex64 values"),
    (None, lambda t: t["head.1.bias"].fill_(float("nan")), "holds NaN"),
])
def test_an_evaluator_file_that_does_not_fit_its_metadata_is_one_line(tmp_path, spec, change, message):
    path = _evaluator(tmp_path, spec, change)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(GankitError) as exc:
            clf.load_classifier(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


# ---------------------------------------------------------------------------------------------- sizes and numbers
@pytest.mark.parametrize("argv, message", [
    (["train", "--set", "d_channels=1000000,1000000,1000000"], "each of d_channels must be a whole number in [1, "),
    (["data", "mnist5k", "--image-size", "100000"], "--image-size must be a whole number in [8, 1024]"),
    (["classifier", "train", "--image-size", "100000"], "--image-size must be a whole number in [8, 1024]"),
    (["evaluate", "RUN", "--seed", str(2**64)], "--seed must be a whole number in [0, 2**63)"),
    (["evaluate", "RUN", "--seed", "-1"], "--seed must be a whole number in [0, 2**63)"),
    (["detect", "eval", "DET", "--real", "mnist5k", "--fake", "RUN", "--seed", "-1"], "--seed must be a whole number"),
    (["detect", "train", "--real", "mnist5k", "--fake", "RUN", "--seed", str(2**63 - 1), "--out", "OUT"],
     "--seed must be a whole number in [0, 2**63 - 2)"),
])
def test_sizes_and_seeds_past_their_bounds_are_one_line(mlp_run, tmp_path, capsys, monkeypatch, argv, message):
    monkeypatch.chdir(tmp_path)
    argv = [{"RUN": str(mlp_run), "DET": str(tmp_path), "OUT": str(tmp_path / "out")}.get(a, a) for a in argv]
    _one_line(capsys, main(argv), message)
    assert not (tmp_path / "out").exists()


def test_sizes_in_a_config_file_are_bounded(tmp_path):
    for line, message in (("num_classes = 100000000", "num_classes must be a whole number in [0, 10000]"),
                          ('d_channels = "100000000,16,16"', "each of d_channels must be"),
                          # second pass: more epochs than a checkpoint may record (the run could never resume)
                          ("epochs = 100000000000000000000000", "epochs must be a whole number in [1, 10000000]")):
        (tmp_path / "c.toml").write_text(line + "\n")
        with pytest.raises(GankitError) as exc:
            config.resolve(file=tmp_path / "c.toml")
        assert message in str(exc.value)


@pytest.mark.parametrize("kwargs, message", [
    ({"n": 2.5}, "-n must be a whole number >= 1, got 2.5"),
    ({"n": True}, "-n must be a whole number"),
    ({"seed": -1}, "--seed must be a whole number in [0, 2**63)"),
    ({"seed": 1.5}, "--seed must be a whole number"),
    ({"interpolate": 2.5}, "--interpolate must be a whole number"),
    ({"out": 5}, "out must be a path"),
])
def test_the_python_api_checks_its_arguments_as_the_cli_does(mlp_run, tmp_path, kwargs, message):
    args = {"n": 4, "out": tmp_path / "g.png", **kwargs}
    with pytest.raises(GankitError) as exc:
        gankit.generate(mlp_run, **args)
    assert message in str(exc.value)
    assert not (tmp_path / "g.png").exists()


def test_resume_checks_its_changes_argument(mlp_run, tmp_path):
    """Second pass: gankit.resume(run, ["epochs"]) raised TypeError ('list' object is not a mapping)."""
    run = shutil.copytree(mlp_run, tmp_path / "run")
    before = snapshot(run)
    for changes in (["epochs"], "epochs=2", 5):
        with pytest.raises(GankitError, match="changes must be a mapping of config keys to values"):
            gankit.resume(run, changes)
    assert snapshot(run) == before


def test_an_ema_decay_of_one_is_refused():
    with pytest.raises(GankitError, match=r"ema must be 0 \(off\) or a decay in \[0.5, 1\)"):
        config.resolve("simple-gan", sets={"ema": "1"})
    assert config.resolve("simple-gan", sets={"ema": "0.999"}).ema == 0.999
