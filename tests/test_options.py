"""Issue 4: the other losses, penalties, spectral norm, EMA, DiffAugment, conditional generation, walks."""

from __future__ import annotations

import json

import pytest
import torch
from PIL import Image
from torch import nn

from gankit import config as config_mod
from gankit.checkpoint import export_generator, export_info, load_checkpoint, load_generator, load_run_config
from gankit.cli import main
from gankit.diffaug import POLICIES, cutout, diff_augment, parse_policy, translation
from gankit.ema import EMA
from gankit.errors import GankitError
from gankit.losses import LOSSES, gradient_penalty, r1_penalty
from gankit.models import build, build_generator
from gankit.train import train

from .conftest import tiny_config


# ---------------------------------------------------------------- losses


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_each_loss_pushes_d_and_g_the_right_way(name):
    loss = LOSSES[name]
    real = torch.full((4,), 0.5, requires_grad=True)
    fake = torch.full((4,), 0.5, requires_grad=True)
    loss.d(real, fake).backward()
    assert (real.grad < 0).all(), "descending D's loss must raise D on real images"
    assert (fake.grad > 0).all(), "descending D's loss must lower D on fake images"
    fake_g = torch.full((4,), 0.5, requires_grad=True)
    loss.g(fake_g).backward()
    assert (fake_g.grad < 0).all(), "descending G's loss must raise D on fake images"


def test_loss_values_on_hand_made_outputs():
    one, minus = torch.ones(3), -torch.ones(3)
    assert LOSSES["lsgan"].d(one, torch.zeros(3)).item() == 0  # perfect least-squares discriminator
    assert LOSSES["lsgan"].g(torch.zeros(3)).item() == pytest.approx(0.5)
    assert LOSSES["hinge"].d(one, minus).item() == 0  # both margins met
    assert LOSSES["hinge"].d(torch.zeros(3), torch.zeros(3)).item() == pytest.approx(2.0)
    assert LOSSES["wgan-gp"].d(torch.full((3,), 2.0), one).item() == pytest.approx(-1.0)  # -(E D(x) - E D(G(z)))
    assert LOSSES["hinge"].g(torch.full((3,), 2.0)).item() == pytest.approx(-2.0)
    assert LOSSES["wgan-gp"].n_critic == 5 and LOSSES["wgan-gp"].d_norm == "layer"


def _linear_critic(scale: float) -> nn.Module:
    critic = nn.Sequential(nn.Flatten(), nn.Linear(12, 1, bias=False))
    with torch.no_grad():
        w = torch.randn(1, 12, generator=torch.Generator().manual_seed(0))
        critic[1].weight.copy_(w / w.norm() * scale)  # gradient norm = scale everywhere
    return critic


def test_gradient_penalty_zero_for_1_lipschitz_positive_for_steep():
    real, fake = torch.randn(16, 3, 2, 2), torch.randn(16, 3, 2, 2)
    assert gradient_penalty(_linear_critic(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    steep = _linear_critic(5.0)
    gp = gradient_penalty(steep, real, fake)
    assert gp.item() == pytest.approx(16.0, rel=1e-5)  # (5 - 1)^2
    gp.backward()  # double backward reaches the critic's weights
    assert steep[1].weight.grad.abs().sum() > 0
    assert r1_penalty(_linear_critic(3.0), real).item() == pytest.approx(9.0, rel=1e-5)  # ||grad||^2


# ---------------------------------------------------------------- EMA


def test_ema_update_arithmetic_and_warmup():
    model = nn.Linear(2, 1, bias=False)
    with torch.no_grad():
        model.weight.fill_(0.0)
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        model.weight.fill_(10.0)
    assert ema.current_decay() == pytest.approx(0.1)  # warm-up: (1 + 0) / (10 + 0)
    ema.update()
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 9.0))  # 0.1 * 0 + 0.9 * 10
    ema.updates = 1000  # warm-up over: the configured decay
    ema.update()
    assert torch.allclose(ema.model.weight, torch.full((1, 2), 9.5))  # 0.5 * 9 + 0.5 * 10
    assert not any(p.requires_grad for p in ema.model.parameters())


def test_ema_recalibrates_batchnorm_for_the_averaged_weights():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    ema = EMA(model, 0.9)
    x = torch.randn(64, 3, generator=torch.Generator().manual_seed(1)) * 3 + 2
    ema.model[1].running_mean.fill_(123.0)  # stale statistics from elsewhere
    ema.recalibrate(lambda n: (x,), batches=3)
    expected = ema.model[0](x).mean(0)
    assert torch.allclose(ema.model[1].running_mean, expected, atol=1e-5)
    assert not ema.model.training and ema.model[1].momentum == 0.1  # back to eval mode and normal momentum


# ---------------------------------------------------------------- DiffAugment


def test_diffaugment_keeps_shapes_and_lets_gradients_reach_g():
    G, _ = build("dcgan", 8, 1, 28)
    fake = G(torch.randn(6, 8))
    out = diff_augment(fake, parse_policy("color,translation,cutout"), torch.Generator().manual_seed(0))
    assert out.shape == fake.shape
    out.square().mean().backward()
    grads = [p.grad for p in G.parameters()]
    assert all(g is not None for g in grads) and sum(g.abs().sum() for g in grads) > 0
    assert parse_policy("cutout, translation") == ("translation", "cutout")  # fixed order, spaces allowed
    assert set(POLICIES) == {"color", "translation", "cutout"}


def test_translation_moves_content_and_cutout_blanks_a_square():
    x = torch.zeros(32, 1, 16, 16)
    x[:, :, 6:10, 6:10] = 1.0  # a centred square that no shift of <= 2 pixels pushes out
    moved = translation(x, torch.Generator().manual_seed(0))
    assert torch.allclose(moved.sum((1, 2, 3)), x.sum((1, 2, 3)))  # content kept
    assert (moved != x).any(dim=(1, 2, 3)).sum() > 16  # most images moved
    digit = torch.full((32, 1, 16, 16), -1.0)
    digit[:, :, 6:10, 6:10] = 1.0
    shifted = translation(digit, torch.Generator().manual_seed(0))
    assert set(shifted.unique().tolist()) == {-1.0, 1.0}  # the border is background, not a gray band
    assert torch.equal((shifted == 1).sum((1, 2, 3)), (digit == 1).sum((1, 2, 3)))
    blanked = cutout(torch.ones(32, 1, 16, 16), torch.Generator().manual_seed(0))
    zeros = (blanked == 0).float().mean((1, 2, 3))
    assert (zeros <= 0.25 + 1e-6).all() and (zeros == 0.25).any() and (zeros > 0).all()
    again = cutout(torch.ones(32, 1, 16, 16), torch.Generator().manual_seed(0))
    assert torch.equal(blanked, again)  # seeded: a resumed run draws the same


# ---------------------------------------------------------------- models


def test_conditional_and_spectral_norm_models():
    G, D = build("dcgan", 64, 1, 28, num_classes=10, spectral_norm=True)
    z, y = torch.randn(4, 64), torch.tensor([0, 3, 7, 9])
    images = G(z, y)
    assert images.shape == (4, 1, 28, 28)
    assert G.base.net[0].in_channels == 64 + 10  # noise and a one-hot label
    assert G(z[:1], y[:1]).sub(G(z[:1], y[1:2])).abs().sum() > 0  # the label changes the image
    assert D(images, y).shape == (4,)
    assert D(images, y).sub(D(images, (y + 1) % 10)).abs().sum() > 0  # the projection sees the label
    assert any("parametrizations" in k for k in D.state_dict())
    _, critic = build("dcgan", 64, 3, 32, d_norm="layer")
    assert not any(isinstance(m, nn.BatchNorm2d) for m in critic.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in critic.modules())


# ---------------------------------------------------------------- training with the options


def test_each_loss_trains_and_resumes_identically(tmp_path):
    sets = dict(preset="dcgan", loss="wgan-gp", ema=0.99, diffaug="translation,cutout", conditional=True,
                subset=128, eval_every=0)
    train(tiny_config(**sets, epochs=2), tmp_path / "straight", progress=False)
    train(tiny_config(**sets, epochs=1), tmp_path / "resumed", progress=False)
    from gankit.train import resume

    resume(tmp_path / "resumed", {"epochs": 2}, progress=False)
    rows = [[json.loads(line) for line in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
            for run in ("straight", "resumed")]
    train_rows = [[(r["loss_D"], r["loss_G"]) for r in rs if r["kind"] == "train"] for rs in rows]
    assert train_rows[0] == train_rows[1] and len(train_rows[0]) == 8
    g_losses = [g for _, g in train_rows[0]]
    assert g_losses[0] == g_losses[3] == 0.0 and g_losses[4] != 0.0  # first G step after n_critic = 5 D steps
    cfg = config_mod.load(tmp_path / "straight" / "config.toml")
    assert (cfg.n_critic, cfg.d_norm, cfg.num_classes) == (5, "layer", 10)  # "auto" written down
    state = load_checkpoint(tmp_path / "straight")
    from safetensors.torch import load_file

    exported = load_file(str(tmp_path / "straight" / "generator.safetensors"))
    ema_weights, live = state["ema"]["model"], state["generator"]
    key = "base.net.0.weight"
    assert torch.equal(exported[key], ema_weights[key]) and not torch.equal(exported[key], live[key])
    assert state["ema"]["updates"] == 1  # 8 steps, G steps at 5 (and 10 would be the next)


@pytest.mark.parametrize("sets", [dict(loss="lsgan"), dict(loss="hinge", spectral_norm=True, r1_gamma=1.0, r1_every=2),
                                  dict(loss="bce", lr_d=1e-4, diffaug="color")])
def test_options_train_a_dcgan(tmp_path, sets):
    result = train(tiny_config(preset="dcgan", subset=64, eval_every=0, **sets), tmp_path / "run", progress=False)
    assert result.steps == 2 and all(torch.isfinite(torch.tensor(v)) for v in result.last.values())
    assert (tmp_path / "run" / "progress.gif").is_file()


def test_time_limit_stops_and_keeps_a_resumable_run(tmp_path):
    result = train(tiny_config(epochs=50, time_limit=0.001, log_every=2, eval_every=0), tmp_path / "run",
                   progress=False)
    assert result.epochs == 1 and result.steps == 2 and "time limit" in result.stopped
    assert load_checkpoint(tmp_path / "run")["epoch"] == 1
    with Image.open(tmp_path / "run" / "progress.gif") as gif:
        assert gif.n_frames == 1 + 4 or gif.n_frames == 1  # identical frames may be merged by Pillow


# ---------------------------------------------------------------- conditional generation, walks


@pytest.fixture(scope="module")
def digit_evaluator(tmp_path_factory):
    """A classifier of 1,000 real digits (better than the 256-digit one the tiny runs would get)."""
    from gankit import classifier as clf
    from gankit.data import load

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
    from gankit.evaluate import evaluate

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
    from gankit import data as data_mod
    from gankit import metrics
    from gankit.evaluate import evaluate

    run, _ = _stub_conditional_run(tmp_path, digit_evaluator)
    cfg = load_run_config(run)
    counts = torch.bincount(data_mod.load(cfg.data, subset=cfg.subset).labels, minlength=10)
    assert counts.unique().numel() > 1  # the 256-digit subset is unbalanced
    seen = {}
    real_measure = metrics.measure

    def spy(draw, model, ref, n, kid_subsets=50, labels=None):
        seen["labels"] = labels
        return real_measure(draw, model, ref, n, kid_subsets=kid_subsets, labels=labels)

    monkeypatch.setattr(metrics, "measure", spy)
    evaluate(run, n=256, progress=False, record=False)
    assert torch.equal(torch.bincount(seen["labels"], minlength=10), counts)  # 256 labels, the data's counts


def test_conditional_training_grid_has_a_column_per_class(tmp_path):
    result = train(tiny_config(conditional=True, ema=0.99, eval_every=1, eval_samples=100), tmp_path / "run",
                   progress=False)
    evals = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "class_accuracy" in [e for e in evals if e["kind"] == "eval"][-1]
    with Image.open(tmp_path / "run" / "samples" / "epoch_001.png") as grid:
        # 10 columns of 28 + 2 padding; sample_count 16 rounded up to 2 whole rows
        assert grid.size == (10 * 30 + 2, 2 * 30 + 2)
    assert result.best_fd is not None


def test_resumed_conditional_run_keeps_its_checkpoints_grid(tmp_path):
    # a checkpoint from before grids were rounded up to whole rows holds fewer fixed noise vectors than a new
    # run would draw: the resumed run keeps them, and labels them to match
    from gankit.checkpoint import save_checkpoint

    run = tmp_path / "run"
    train(tiny_config(preset="dcgan", subset=64, eval_every=0), run, progress=False)
    state = load_checkpoint(run)
    assert state["fixed_noise"].shape[0] == 20  # sample_count 16 -> 2 rows of 10 classes
    state["fixed_noise"] = state["fixed_noise"][:7]
    save_checkpoint(state, run)
    train(config_mod.override(load_run_config(run), {"epochs": 2}), run, resume=True, progress=False)
    with Image.open(run / "samples" / "epoch_002.png") as grid:
        assert grid.size == (7 * 30 + 2, 30 + 2)


def test_conditional_auto_follows_the_source(tmp_path):
    assert config_mod.resolve("dcgan").conditional == "auto"
    assert config_mod.resolve("simple-gan").conditional == "false"  # the tutorial's GAN, exactly
    # a labeled source: conditional, and config.toml records what auto became
    train(tiny_config(preset="dcgan", epochs=1, eval_every=0, subset=64), tmp_path / "labeled", progress=False)
    cfg = load_run_config(tmp_path / "labeled")
    assert (cfg.conditional, cfg.num_classes) == ("true", 10)
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
    assert (cfg.conditional, cfg.num_classes) == ("false", 0)


def test_conditional_values_old_and_new(tmp_path):
    assert config_mod.resolve("dcgan", sets={"conditional": "yes"}).conditional == "true"
    assert config_mod.resolve("dcgan", conditional=False).conditional == "false"
    old = tmp_path / "old.toml"  # a config.toml written before conditional took "auto": a TOML bool
    old.write_text("conditional = true\nnum_classes = 10\n")
    assert config_mod.load(old).conditional == "true"
    with pytest.raises(GankitError, match="expects true, false or auto, got 'maybe'"):
        config_mod.resolve("dcgan", sets={"conditional": "maybe"})
    # a Config made in code with a bool: refused by validate, understood by train
    import dataclasses

    made = dataclasses.replace(tiny_config(subset=64, eval_every=0), conditional=True)
    with pytest.raises(GankitError, match="expects true, false or auto, got True"):
        config_mod.validate(made)
    train(made, tmp_path / "run", progress=False)
    assert load_run_config(tmp_path / "run").num_classes == 10


def test_interpolation_rows_are_straight_walks_and_gif(tmp_path, mlp_run, capsys):
    out = tmp_path / "walk.npy"
    assert main(["generate", str(mlp_run), "--interpolate", "5", "-n", "3", "-o", str(out), "--gif"]) == 0
    import numpy as np

    frames = torch.from_numpy(np.load(out)).view(3, 5, 1, 28, 28)
    assert torch.allclose(frames[0, -1], frames[1, 0], atol=1e-5)  # walk r ends where walk r + 1 starts
    assert not torch.allclose(frames[0, 0], frames[0, -1])
    from gankit.generate import latent_walks

    z = latent_walks(3, 5, 64)
    assert torch.allclose(z[0, 2], (z[0, 0] + z[0, 4]) / 2, atol=1e-6)  # a straight line
    with Image.open(tmp_path / "walk.gif") as gif:
        assert gif.n_frames == 5 + 3  # there and back
    assert main(["generate", str(mlp_run), "--interpolate", "4", "-o", str(tmp_path / "w.png")]) == 0
    with Image.open(tmp_path / "w.png") as png:
        assert png.size == (4 * 30 + 2, 8 * 30 + 2)  # default 8 walks, one per row


# ---------------------------------------------------------------- bad values


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


def test_conditional_needs_labels(tmp_path, capsys):
    folder = tmp_path / "flat"
    folder.mkdir()
    for i in range(4):
        Image.new("L", (28, 28), color=i * 40).save(folder / f"{i}.png")
    assert main(["train", "--data", f"folder:{folder}", "--set", "conditional=true", "--out",
                 str(tmp_path / "run")]) == 2
    assert "needs a labeled source" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


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


def test_resume_on_another_device_kind_reseeds_with_a_warning(tmp_path, capsys):
    from gankit.checkpoint import save_checkpoint
    from gankit.train import resume

    run = tmp_path / "run"
    train(tiny_config(eval_every=0, subset=64), run, progress=False)
    state = load_checkpoint(run)
    state["rng_device"], state["rng"] = "cuda", torch.zeros(16, dtype=torch.uint8)  # as a CUDA run saves it
    save_checkpoint(state, run)
    result = resume(run, {"epochs": 2}, progress=True)
    assert result.epochs == 2 and "losses will not match a straight run" in capsys.readouterr().err


def test_generate_rejects_a_bad_device(tmp_path, capsys, mlp_run):
    assert main(["generate", str(mlp_run), "-o", str(tmp_path / "x.png"), "--device", "gpu0"]) == 2
    assert "--device must be auto, cpu or cuda[:N]" in capsys.readouterr().err


def test_unknown_class_names_the_choices(tmp_path, capsys, digit_evaluator):
    run, _ = _stub_conditional_run(tmp_path, digit_evaluator)
    assert main(["generate", str(run), "--class", "11", "-o", str(tmp_path / "x.png")]) == 2
    assert "this run draws 0, 1, 2" in capsys.readouterr().err
    with pytest.raises(GankitError):
        from gankit.generate import resolve_class

        resolve_class("seven", None, 10)


# ---------------------------------------------------------------- the hand-written mlp step


def test_fused_mlp_step_matches_autograd(tmp_path):
    from gankit.fused import supported

    rows = {}
    for fused in (True, False):
        cfg = tiny_config(fused=fused, label_smoothing=0.1, ema=0.9, eval_every=0)
        assert supported(cfg) == fused
        train(cfg, tmp_path / str(fused), progress=False)
        rows[fused] = [json.loads(x) for x in (tmp_path / str(fused) / "metrics.jsonl").read_text().splitlines()
                       if json.loads(x)["kind"] == "train"]
    assert len(rows[True]) == len(rows[False]) == 8
    for a, b in zip(rows[True], rows[False]):
        for key in ("loss_D", "loss_G", "D(x)", "D(G(z))"):
            assert a[key] == pytest.approx(b[key], rel=1e-4, abs=1e-5), key
    fast, slow = load_checkpoint(tmp_path / "True"), load_checkpoint(tmp_path / "False")
    for name in ("generator", "discriminator"):
        for key, value in fast[name].items():
            assert torch.allclose(value, slow[name][key], atol=1e-5), (name, key)
    assert not supported(tiny_config(loss="hinge")) and not supported(tiny_config(preset="dcgan"))


def test_width_multipliers_train_and_rebuild_from_the_run(tmp_path):
    # a wider D and a narrower G: trained, recorded in config.toml, and rebuilt by generate/evaluate
    run = tmp_path / "wide"
    train(tiny_config(preset="dcgan", subset=64, eval_every=0, g_width=0.5, d_width=2.0, d_channels="8,16,32",
                      conditional=False), run,
          progress=False)
    cfg = load_run_config(run)
    assert (cfg.g_width, cfg.d_width, cfg.d_channels) == (0.5, 2.0, "8,16,32")
    # the resumed run rebuilds the same D (16-32-64 channels) from config.toml and loads its weights into it
    result = train(config_mod.override(cfg, {"epochs": 2}), run, resume=True, progress=False)
    assert result.epochs == 2
    d = load_checkpoint(run)["discriminator"]
    assert [v.shape[0] for k, v in d.items() if k.endswith("weight") and v.dim() == 4] == [16, 32, 64]
    generator, _ = load_generator(run)
    first = next(m for m in generator.modules() if isinstance(m, torch.nn.ConvTranspose2d))
    assert first.out_channels == 128  # 256 * 0.5
    assert generator(torch.randn(3, 64)).shape == (3, 1, 28, 28)
    assert export_info(run, "generator.safetensors")["g_width"] == 0.5  # the export describes itself
