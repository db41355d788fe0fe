"""`gankit export --format onnx`: onnxruntime draws what the PyTorch generator draws; metadata; bad input."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import gankit
from gankit import config
from gankit.cli import main
from gankit.models.registry import build_generator
from gankit.run import generator_file, layout

from .conftest import snapshot


def _stub_run(root: Path, name: str, preset: str, classes: list[str] | None = None, channels: int = 1,
              **settings) -> Path:
    """A run directory holding what `gankit train` exports (config.toml, generator.safetensors), from a freshly
    initialized generator whose BatchNorm statistics are made up: eval mode must use them, whatever the batch."""
    cfg = config.resolve(preset, device="cpu", **settings)
    cfg = config.resolve_for_data(cfg, len(classes or ()), channels)
    torch.manual_seed(len(name))
    generator = build_generator(cfg.model, cfg.z_dim, cfg.channels, cfg.image_size, cfg.num_classes, cfg.g_width)
    for module in generator.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.normal_(0, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    run = root / name
    run.mkdir()
    config.save(cfg, run / layout.CONFIG)
    generator_file.export_generator(generator, cfg, run, epoch=3, step=42, classes=classes)
    return run


@pytest.fixture(scope="module")
def runs(tmp_path_factory, dcgan_run) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export-runs")
    return {
        "mlp": _stub_run(root, "mlp", "simple-gan"),
        "dcgan28": _stub_run(root, "dcgan28", "dcgan", conditional=False),
        "dcgan64-rgb": _stub_run(root, "dcgan64", "dcgan", channels=3, image_size=64, data="folder:faces"),
        "conditional": _stub_run(root, "conditional", "dcgan", classes=["cat", "dog", "fox"], channels=3,
                                 image_size=32, data="folder:pets", g_width=0.5),
        "ema": dcgan_run,  # trained: conditional, EMA generator exported (its BatchNorm recalibrated)
    }


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory) -> dict[str, Path]:
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    out = tmp_path_factory.mktemp("onnx")
    return {name: gankit.export(run, out / f"{name}.onnx") for name, run in runs.items()}


def _session(path: Path):
    import onnxruntime

    return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("name", ["mlp", "dcgan28", "dcgan64-rgb", "conditional", "ema"])
def test_onnxruntime_matches_the_pytorch_generator(runs, exported, name, batch):
    generator = gankit.load(runs[name])
    session = _session(exported[name])
    z = torch.randn(batch, generator.z_dim, generator=torch.Generator().manual_seed(batch))
    feed = {"z": z.numpy()}
    labels = None
    if generator.num_classes:
        labels = torch.arange(batch) % generator.num_classes
        feed["labels"] = labels.numpy()
    assert [i.name for i in session.get_inputs()] == list(feed)
    (images,) = session.run(["images"], feed)
    with torch.no_grad():
        want = generator(z, labels).numpy()
    assert images.shape == (batch, *generator.image_shape) and images.dtype == np.float32
    error = np.abs(images - want).max()
    print(f"{name} batch {batch}: max abs error {error:.2e}")
    assert error < 1e-4
    assert images.min() >= -1 and images.max() <= 1
    if name != "mlp":  # the check can tell: BatchNorm with the batch's statistics draws other images
        with torch.no_grad():
            batch_statistics = generator.train()(z, labels).numpy()
        assert np.abs(images - batch_statistics).max() > 1e-2


def test_the_export_is_what_gankit_generate_samples(runs, exported, tmp_path, capsys):
    # the EMA run: generate's seeded noise and its class turns through onnxruntime give generate's images
    assert main(["generate", str(runs["ema"]), "-n", "20", "--seed", "4", "-o", str(tmp_path / "g.npy")]) == 0
    z = torch.randn(20, 64, generator=torch.Generator().manual_seed(4))
    (images,) = _session(exported["ema"]).run(None, {"z": z.numpy(), "labels": (np.arange(20) % 10)})
    assert np.abs(images - np.load(tmp_path / "g.npy")).max() < 1e-4


def test_the_graph_uses_running_batchnorm_statistics(exported):
    import onnx

    model = onnx.load(str(exported["dcgan28"]))
    norms = [n for n in model.graph.node if n.op_type == "BatchNormalization"]
    assert norms, "the dcgan generator has BatchNorm layers"
    for node in norms:
        training = [a.i for a in node.attribute if a.name == "training_mode"]
        assert training in ([], [0]) and len(node.output) == 1  # inference form: no batch statistics out


@pytest.mark.parametrize("name", ["conditional", "ema", "mlp"])
def test_metadata_round_trips(runs, exported, name):
    import onnx

    info = gankit.load(runs[name]).info()
    props = {p.key: p.value for p in onnx.load(str(exported[name])).metadata_props}
    assert json.loads(props["gankit"]) == info
    assert json.loads(_session(exported[name]).get_modelmeta().custom_metadata_map["gankit"]) == info
    from gankit.inference.export import read_info

    assert read_info(exported[name]) == info
    if name == "conditional":
        assert info["classes"] == ["cat", "dog", "fox"] and info["num_classes"] == 3
        assert (info["epoch"], info["step"], info["image_size"], info["channels"]) == (3, 42, 32, 3)
    if name == "mlp":
        assert info["classes"] is None and info["model"] == "mlp" and info["z_dim"] == 64


def test_cli_export_with_best_and_an_opset(runs, tmp_path, capsys, monkeypatch):
    pytest.importorskip("onnxruntime")
    import onnx

    monkeypatch.chdir(tmp_path)
    assert main(["export", str(runs["ema"]), "--best", "--opset", "18"]) == 0
    out = tmp_path / f"{runs['ema'].name}-best.onnx"  # the default name, in the current folder
    assert capsys.readouterr().out.strip() == (
        f"wrote {out.name}: z (N x 64), labels (N of 10 classes) -> images (N x 1 x 28 x 28, in [-1, 1]), epoch 1")
    assert [o.version for o in onnx.load(str(out)).opset_import if o.domain == ""] == [18]
    best = gankit.load(runs["ema"], best=True)
    z = torch.randn(3, 64)
    with torch.no_grad():
        want = best(z, torch.tensor([7, 7, 1])).numpy()
    (got,) = _session(out).run(None, {"z": z.numpy(), "labels": np.array([7, 7, 1])})
    assert np.abs(got - want).max() < 1e-4
    assert [p.name for p in tmp_path.iterdir()] == [out.name]  # no temporary file left beside it


def test_a_failed_write_leaves_no_half_file(runs, tmp_path, capsys, monkeypatch):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"the previous model")

    def torn(model, path):
        Path(path).write_bytes(b"half a mod")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(onnx, "save_model", torn)
    assert main(["export", str(runs["mlp"]), "-o", str(out), "--force"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "No space left on device" in err and str(out) in err
    assert out.read_bytes() == b"the previous model" and [p.name for p in tmp_path.iterdir()] == ["model.onnx"]


def _no_run_generator(tmp_path: Path) -> Path:
    run = tmp_path / "fresh"
    run.mkdir()
    config.save(config.resolve_for_data(config.resolve("simple-gan"), 10, 1), run / layout.CONFIG)
    return run


@pytest.mark.parametrize("case, message", [
    ("format", "unknown export format 'tflite': gankit exports onnx"),
    ("no-generator", "has no generator.safetensors yet: train at least one epoch first"),
    ("no-best", "has no best.safetensors"),
    ("not-a-run", "run directory not found"),
    ("parent-is-a-file", "is a file, not a folder"),
    ("folder", "is a folder: give a file name ending in .onnx"),
    ("suffix", "must end in .onnx"),
    ("inside-run", "is inside the run directory"),
    ("exists", "exists: pass --force to replace it"),
    ("opset", "--opset must be in [18, "),
])
def test_bad_export_requests_are_one_line(runs, tmp_path, capsys, case, message):
    pytest.importorskip("onnxscript")
    run, out, extra = runs["mlp"], tmp_path / "m.onnx", []
    (tmp_path / "file").write_text("x")
    (tmp_path / "taken.onnx").write_text("mine")
    if case == "format":
        extra = ["--format", "tflite"]
    elif case == "no-generator":
        run = _no_run_generator(tmp_path)
    elif case == "no-best":
        extra = ["--best"]
    elif case == "not-a-run":
        run = tmp_path / "nowhere"
    elif case == "parent-is-a-file":
        out = tmp_path / "file" / "m.onnx"
    elif case == "folder":
        out = tmp_path
    elif case == "suffix":
        out = tmp_path / "m.pt"
    elif case == "inside-run":
        out = run / "sub" / "m.onnx"
    elif case == "exists":
        out = tmp_path / "taken.onnx"
    elif case == "opset":
        extra = ["--opset", "13"]
    before = snapshot(tmp_path)
    assert main(["export", str(run), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("gankit: error: ") and message in err, err
    assert snapshot(tmp_path) == before and not (runs["mlp"] / "sub").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_folder_is_one_line(runs, tmp_path, capsys):
    pytest.importorskip("onnxscript")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        assert main(["export", str(runs["mlp"]), "-o", str(folder / "m.onnx")]) == 2
        assert "is not writable" in capsys.readouterr().err
    finally:
        folder.chmod(0o755)


@pytest.mark.parametrize("missing", ["onnx", "onnxscript"])
def test_without_the_extra_one_line_says_what_to_install(runs, tmp_path, capsys, monkeypatch, missing):
    monkeypatch.setitem(sys.modules, missing, None)  # as if not installed: importing it raises ImportError
    assert main(["export", str(runs["mlp"]), "-o", str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and 'pip install -e ".[onnx]"' in err and f"{missing} is missing" in err
    assert list(tmp_path.iterdir()) == []
