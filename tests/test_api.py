"""The Python API: gankit.load and its TrainedGenerator, and train/resume/generate/evaluate/export at the top level."""

from __future__ import annotations

import inspect
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import gankit
from gankit import GankitError
from gankit.cli import main


def test_load_describes_the_generator(mlp_run):
    g = gankit.load(mlp_run)
    assert isinstance(g, gankit.TrainedGenerator) and isinstance(g, torch.nn.Module)
    assert (g.z_dim, g.image_shape, g.classes, g.num_classes) == (64, (1, 28, 28), None, 0)
    assert (g.epoch, g.step) == (1, 8) and g.source == mlp_run / "generator.safetensors"
    assert g.spec["model"] == "mlp" and not g.training
    assert "z_dim=64, image_shape=(1, 28, 28), classes=None, epoch=1" in repr(g)


def test_a_conditional_ema_run_names_its_classes(dcgan_run):
    g = gankit.load(dcgan_run, best=True, device="auto")
    assert g.classes == [str(i) for i in range(10)] and g.num_classes == 10
    assert g.source.name == "best.safetensors" and g.epoch == 1 and g.device.type in ("cpu", "cuda")
    assert g.info()["classes"] == g.classes and g.info()["model"] == "dcgan"


@pytest.mark.parametrize("extra, kwargs", [([], {}), (["--class", "7"], {"classes": 7}),
                                           (["--class", "3"], {"classes": "3"})])
def test_sample_draws_what_gankit_generate_writes(dcgan_run, tmp_path, capsys, extra, kwargs):
    out = tmp_path / "x.npy"
    assert main(["generate", str(dcgan_run), "-n", "12", "--seed", "5", "-o", str(out), *extra]) == 0
    images = gankit.load(dcgan_run).sample(12, seed=5, **kwargs)
    assert images.dtype == torch.float32 and images.shape == (12, 1, 28, 28)
    assert torch.equal(images, torch.from_numpy(np.load(out)))
    assert -1 <= images.min() and images.max() <= 1


def test_sample_outputs(mlp_run):
    g = gankit.load(mlp_run)
    floats = g.sample(6, seed=2)
    as_uint8 = g.sample(6, seed=2, output="uint8")
    assert as_uint8.dtype == torch.uint8 and as_uint8.shape == (6, 1, 28, 28)
    assert torch.equal(as_uint8, ((floats + 1) * 127.5).round().clamp(0, 255).to(torch.uint8))
    pictures = g.sample(6, seed=2, output="pil")
    assert len(pictures) == 6 and all(isinstance(p, Image.Image) for p in pictures)
    assert pictures[4].mode == "L" and pictures[4].size == (28, 28)
    assert np.array_equal(np.asarray(pictures[4]), as_uint8[4, 0].numpy())
    assert not torch.equal(floats, g.sample(6, seed=3))
    assert torch.equal(g.sample(np.int64(6), seed=np.int64(2)), floats)  # numpy's integers are whole numbers


def test_the_generator_is_a_module_that_composes(dcgan_run):
    g = gankit.load(dcgan_run)
    z, labels = torch.randn(4, 64, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2, 9])
    with torch.no_grad():
        direct = g(z, labels)
    assert direct.shape == (4, 1, 28, 28)
    # noise as the sampler draws it: forward is the sampler's function
    z5 = torch.randn(3, 64, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        assert torch.equal(g(z5, torch.arange(3)), g.sample(3, seed=5))
    # a gradient reaches the noise through it (latent optimization, a downstream loss, ...)
    z.requires_grad_(True)
    torch.nn.Sequential()(g(z, labels)).mean().backward()
    assert z.grad is not None and z.grad.abs().sum() > 0


def test_per_image_classes(dcgan_run):
    g = gankit.load(dcgan_run)
    names = ["1", "2", 3, "9"]
    mixed = g.sample(4, seed=1, classes=names)
    z = torch.randn(4, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(mixed, g(z, torch.tensor([1, 2, 3, 9])))
    assert torch.equal(g.sample(4, seed=1, classes=torch.tensor([1, 2, 3, 9])), mixed)


@pytest.mark.parametrize("call, message", [
    (lambda g: g.sample(0), "n must be a whole number >= 1"),
    (lambda g: g.sample(2, seed=-1), "seed must be a whole number in [0, 2**63)"),
    (lambda g: g.sample(2, output="png"), "output must be one of tensor, uint8, pil"),
    (lambda g: g.sample(2, classes=3), "this generator is unconditional"),
    (lambda g: g(torch.zeros(2, 64), torch.zeros(2, dtype=torch.long)), "unconditional: it takes no labels"),
    (lambda g: g(torch.zeros(2, 63)), "z must be N x 64 noise"),
])
def test_bad_requests_to_an_unconditional_generator(mlp_run, call, message):
    with pytest.raises(GankitError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")
                       .replace("[", r"\[")):
        call(gankit.load(mlp_run))


@pytest.mark.parametrize("call, message", [
    (lambda g: g.sample(2, classes="seven"), "unknown class 'seven': this run draws 0, 1, 2"),
    (lambda g: g.sample(2, classes=10), "unknown class 10"),
    (lambda g: g.sample(3, classes=[1, 2]), "classes has 2 entries for 3 images"),
    (lambda g: g(torch.zeros(2, 64)), "this generator is conditional: pass N class indices"),
    (lambda g: g(torch.zeros(2, 64), torch.tensor([0, 99])), "labels must be 2 integer class indices in .0, 10."),
    (lambda g: g(torch.zeros(2, 64), torch.tensor([0, -1])), "labels must be 2 integer class indices"),
    (lambda g: g(torch.zeros(2, 64), torch.tensor([0.0, 1.0])), "labels must be 2 integer class indices"),
    (lambda g: g.sample(2, classes="\u00b2"), "unknown class '\u00b2'"),
    (lambda g: g.sample(2, classes=7.0), "classes must be a class"),
    (lambda g: g.sample(10**12), "would take more than 8 GiB"),
])
def test_bad_requests_to_a_conditional_generator(dcgan_run, call, message):
    with pytest.raises(GankitError, match=message):
        call(gankit.load(dcgan_run))


def test_numpy_classes_are_classes(dcgan_run):
    g = gankit.load(dcgan_run)
    assert torch.equal(g.sample(2, classes=np.int64(3)), g.sample(2, classes=3))
    assert torch.equal(g.sample(2, classes=np.array([1, 2])), g.sample(2, classes=[1, 2]))


def test_load_errors_are_one_line(tmp_path, mlp_run):
    with pytest.raises(GankitError, match="run_dir must be a path"):
        gankit.load(123)
    with pytest.raises(GankitError, match="run directory not found"):
        gankit.load(tmp_path / "nothing")
    with pytest.raises(GankitError, match="device must be auto, cpu or cuda"):
        gankit.load(mlp_run, device="gpu0")


def test_train_and_resume_from_python(tmp_path):
    settings = dict(subset=64, batch_size=32, epochs=1, eval_every=0, sample_count=4, device="cpu")
    result = gankit.train("simple-gan", tmp_path / "run", progress=False, **settings)
    assert result.epochs == 1 and result.run_dir == tmp_path / "run"
    again = gankit.resume(tmp_path / "run", epochs=2, progress=False)
    assert again.epochs == 2 and gankit.load(tmp_path / "run").epoch == 2
    with pytest.raises(GankitError, match="cannot change lr when resuming"):
        gankit.resume(tmp_path / "run", epochs=3, lr=0.1, progress=False)
    with pytest.raises(GankitError, match="give the preset once"):
        gankit.train("simple-gan", tmp_path / "other", preset="dcgan", **settings)
    with pytest.raises(GankitError, match="unknown config key 'epoch'"):
        gankit.train("simple-gan", tmp_path / "other", epoch=3)
    assert not (tmp_path / "other").exists()


DOCUMENTED = {"train": ["cfg", "run_dir", "resume", "progress", "settings"],
              "resume": ["run_dir", "changes", "progress", "settings"],
              "generate": ["run_dir", "n", "out", "seed", "device", "klass", "interpolate", "gif", "best", "force"],
              "evaluate": ["run_dir", "n", "evaluator", "best", "seed", "device", "progress", "record", "features",
                           "kind"],
              "evaluate_fakes": ["fakes", "real", "n", "evaluator", "features", "kind", "seed", "data_dir", "device",
                                 "progress"],
              "export": ["run_dir", "out", "format", "best", "opset", "force"],
              "load": ["run_dir", "best", "device"]}


def test_top_level_functions_are_the_documented_ones():
    for name, params in DOCUMENTED.items():
        function = getattr(gankit, name)
        assert inspect.isfunction(function), name
        assert list(inspect.signature(function).parameters) == params, name
        doc = inspect.getdoc(function)
        assert "Args:" in doc and "Returns:" in doc, name
        assert all(p in doc for p in params if p != "settings"), name


@pytest.mark.parametrize("first", ["import gankit.training.launch, gankit.inference.generate, "
                                   "gankit.quality.evaluate, gankit.inference.export",
                                   "from gankit.training.launch import resume, train",
                                   "from gankit import cli; cli.main(['generate', '--help'])",
                                   "import gankit"])
def test_the_names_stay_functions_after_their_modules_are_imported(first):
    # no module of the package is named like a function of the API (`import gankit.generate` would rebind it)
    import pkgutil

    assert not set(gankit._LAZY) & {m.name for m in pkgutil.iter_modules(gankit.__path__)}
    code = (f"try:\n    {first}\nexcept SystemExit:\n    pass\n"
            "import inspect, sys, gankit, gankit.training.launch, gankit.inference.generate\n"
            "import gankit.quality.evaluate, gankit.inference.export, gankit.inference.trained\n"
            "for name in ('train', 'resume', 'generate', 'evaluate', 'export', 'load'):\n"
            "    f = getattr(gankit, name)\n"
            "    assert inspect.isfunction(f) and f.__name__ == name, (name, f)\n"
            "from gankit import train\n"
            "assert train is sys.modules['gankit.training.launch'].train\n"
            "trained = sys.modules['gankit.inference.trained']\n"
            "assert gankit.Generator is gankit.TrainedGenerator is trained.TrainedGenerator\n"
            "assert list(inspect.signature(gankit.train).parameters)[:2] == ['cfg', 'run_dir']\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]


def test_import_gankit_imports_no_torch():
    code = "import sys, gankit; assert 'torch' not in sys.modules, 'torch'; print(gankit.__version__)"
    done = subprocess.run([sys.executable, "-X", "importtime", "-c", code], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == gankit.__version__, done.stderr[-2000:]
    assert "| torch" not in done.stderr and "gankit" in done.stderr
    with pytest.raises(AttributeError, match="has no attribute 'nothing'"):
        gankit.nothing  # noqa: B018
