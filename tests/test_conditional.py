"""Class-conditional runs: conditional=auto, labels in grids and evaluations, generating one class."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image

from gankit import config as config_mod
from gankit.cli import main
from gankit.data import loading
from gankit.errors import GankitError
from gankit.models.registry import build_generator
from gankit.run.checkpoint import load_checkpoint
from gankit.run.generator_file import export_generator, load_generator, load_run_config
from gankit.training.launch import train

from .conftest import grid_scale, tiny_config


@pytest.fixture(scope="module")
def digit_evaluator(tmp_path_factory):
    """A classifier of 1,000 real digits (better than the 256-digit one the tiny runs would get)."""
    from gankit.data.loading import load
    from gankit.quality import classifier as clf

    data = load("mnist5k", subset=1000)
    model = clf.train_classifier(data, epochs=4, progress=False)
    return data, model, clf.save_classifier(model, tmp_path_factory.mktemp("evaluator") / "digits.safetensors")


def _stub_conditional_run(tmp_path, digit_evaluator):
    """A conditional mlp run whose generator draws, for label y, a real digit of class y (whatever z is):
    the digit of that class the evaluator is surest of."""
    data, model, path = digit_evaluator
    _, logits = model.embed(data.images)
    templates = []
    for c in range(10):
        mine = (data.labels == c) & (logits.argmax(1) == c)
        assert mine.any(), f"the evaluator reads no {c} correctly"
        best = logits[:, c].masked_fill(~mine, -1e9).argmax()
        templates.append(data.images[best].float().div(127.5).sub(1).clamp(-0.999, 0.999).flatten())
    G = build_generator("mlp", 64, 1, 28, num_classes=10)
    with torch.no_grad():
        for p in G.parameters():
            p.zero_()
        G.base.net[0].weight[:10, 64:74] = torch.eye(10)  # hidden unit c = [label == c]; z is ignored
        G.base.net[2].weight[:, :10] = torch.atanh(torch.stack(templates, 1))  # tanh(W h) = template
    cfg = tiny_config(conditional=True, num_classes=10, channels=1, evaluator=str(path))
    run = tmp_path / "stub"
    run.mkdir()
    config_mod.save(cfg, run / "config.toml")
    export_generator(G, cfg, run, classes=[str(i) for i in range(10)])
    return run, model


def test_generate_class_is_honoured_and_evaluation_reports_class_accuracy(tmp_path, capsys, digit_evaluator):
    from gankit.quality.evaluate import evaluate

    run, evaluator = _stub_conditional_run(tmp_path, digit_evaluator)
    assert main(["generate", str(run), "--class", "7", "-n", "12", "-o", str(tmp_path / "sevens.npy")]) == 0
    import numpy as np

    sevens = torch.from_numpy(np.load(tmp_path / "sevens.npy"))
    _, logits = evaluator.embed(sevens)
    assert sevens.shape == (12, 1, 28, 28) and (logits.argmax(1) == 7).all()
    result = evaluate(run, n=100, progress=False)  # the run's config names the evaluator
    assert result.values["class_accuracy"] == 1.0 and result.values["class_accuracy_per_class"] == [1.0] * 10
    assert result.values["classes_covered"] == 10
    assert "class accuracy" in result.table()


def test_evaluation_draws_labels_in_the_data_class_mix(tmp_path, digit_evaluator, monkeypatch):
    from gankit.quality import metrics
    from gankit.quality.evaluate import evaluate

    run, _ = _stub_conditional_run(tmp_path, digit_evaluator)
    cfg = load_run_config(run)
    counts = torch.bincount(loading.load(cfg.data, subset=cfg.subset).labels, minlength=10)
    assert counts.unique().numel() > 1  # the 256-digit subset is unbalanced
    seen = {}
    real_measure = metrics.measure

    def spy(draw, model, ref, n, kid_subsets=50, labels=None, held_out=0):
        seen["labels"] = labels
        return real_measure(draw, model, ref, n, kid_subsets=kid_subsets, labels=labels, held_out=held_out)

    monkeypatch.setattr(metrics, "measure", spy)
    evaluate(run, n=256, progress=False, record=False)  # capped at the floor's 128 held-out images
    drawn = torch.bincount(seen["labels"], minlength=10)
    assert drawn.sum() == 128 and (drawn - counts / 2).abs().max() <= 1  # half of each class's count, rounded


def test_conditional_training_grid_has_a_column_per_class(tmp_path):
    result = train(tiny_config(conditional=True, ema=0.99, eval_every=1, eval_samples=100), tmp_path / "run",
                   progress=False)
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "class_accuracy" in [e for e in evals if e["kind"] == "eval"][-1]
    with Image.open(tmp_path / "run" / "samples" / "epoch_001.png") as grid:
        # 10 columns of 28 + 2 padding; sample_count 16 rounded up to 2 whole rows; enlarged k times
        k = grid_scale(10 * 30 + 2)
        assert grid.size == ((10 * 30 + 2) * k, (2 * 30 + 2) * k)
    assert result.best_fd is not None


def test_resumed_conditional_run_keeps_its_checkpoints_grid(tmp_path):
    # a checkpoint from before grids were rounded up to whole rows holds fewer fixed noise vectors than a new
    # run would draw: the resumed run keeps them, and labels them to match
    from gankit.run.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train(tiny_config(preset="dcgan", subset=64, eval_every=0), run, progress=False)
    state = load_checkpoint(run)
    assert state["fixed_noise"].shape[0] == 20  # sample_count 16 -> 2 rows of 10 classes
    state["fixed_noise"] = state["fixed_noise"][:7]
    save_checkpoint(state, run)
    train(config_mod.override(load_run_config(run), {"epochs": 2}), run, resume=True, progress=False)
    with Image.open(run / "samples" / "epoch_002.png") as grid:
        k = grid_scale(7 * 30 + 2)
        assert grid.size == ((7 * 30 + 2) * k, (30 + 2) * k)


def test_conditional_auto_follows_the_source(tmp_path):
    assert config_mod.resolve("dcgan").conditional == "auto"
    assert config_mod.resolve("simple-gan").conditional is False  # the tutorial's GAN, exactly
    # a labeled source: conditional, and config.toml records what auto became
    train(tiny_config(preset="dcgan", epochs=1, eval_every=0, subset=64), tmp_path / "labeled", progress=False)
    cfg = load_run_config(tmp_path / "labeled")
    assert (cfg.conditional, cfg.num_classes) == (True, 10)
    assert "conditional = true\n" in (tmp_path / "labeled" / "config.toml").read_text()  # a TOML bool
    G = load_generator(tmp_path / "labeled")[0]
    assert G.num_classes == 10
    # a flat folder has no labels: unconditional
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(8):
        Image.fromarray(torch.randint(0, 256, (28, 28), dtype=torch.uint8).numpy()).save(folder / f"{i}.png")
    train(tiny_config(preset="dcgan", data=f"folder:{folder}", subset=0, batch_size=4, eval_every=0),
          tmp_path / "flat-run", progress=False)
    cfg = load_run_config(tmp_path / "flat-run")
    assert (cfg.conditional, cfg.num_classes) == (False, 0)


def test_conditional_values_old_and_new(tmp_path):
    assert config_mod.resolve("dcgan", sets={"conditional": "yes"}).conditional is True
    assert config_mod.resolve("dcgan", conditional=False).conditional is False
    old = tmp_path / "old.toml"  # config.toml files of earlier gankits: a TOML bool, or "true" / "false"
    for text in ("conditional = true\nnum_classes = 10\n", 'conditional = "true"\nnum_classes = 10\n'):
        old.write_text(text)
        assert config_mod.load(old).conditional is True
    with pytest.raises(GankitError, match="expects true, false or auto, got 'maybe'"):
        config_mod.resolve("dcgan", sets={"conditional": "maybe"})
    # a Config made in code with a string or a non-bool: refused by validate; a bool is what it holds
    import dataclasses

    for bad in ("true", 1):
        with pytest.raises(GankitError, match="expects true, false or auto, got"):
            config_mod.validate(dataclasses.replace(tiny_config(subset=64, eval_every=0), conditional=bad))
    made = dataclasses.replace(tiny_config(subset=64, eval_every=0), conditional=True)
    config_mod.validate(made)
    train(made, tmp_path / "run", progress=False)
    assert load_run_config(tmp_path / "run").num_classes == 10


def test_conditional_needs_labels(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (28, 28), color=i * 40).save(folder / f"{i}.png")
    assert main(["train", "--data", f"folder:{folder}", "--set", "conditional=true", "--out",
                 str(tmp_path / "run")]) == 2
    assert "needs a labeled source" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_unknown_class_names_the_choices(tmp_path, capsys, digit_evaluator):
    run, _ = _stub_conditional_run(tmp_path, digit_evaluator)
    assert main(["generate", str(run), "--class", "11", "-o", str(tmp_path / "x.png")]) == 2
    assert "this run draws 0, 1, 2" in capsys.readouterr().err
    with pytest.raises(GankitError):
        from gankit.inference.generate import resolve_class

        resolve_class("seven", None, 10)
