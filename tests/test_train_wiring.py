"""How train() wires its pieces together, pinned by what a run leaves behind (metrics.jsonl, checkpoint.pt,
generator.safetensors), so that restructuring the loop cannot silently drop a piece.

Most tests compare step 1 of runs whose configs differ in one option only: at step 1 both runs have the same
initial weights and draw the same batch and noise, so whatever differs comes from that option alone.
The runs are tiny mlp runs on IDX digits written here (faster to load than mnist5k).
"""

from __future__ import annotations

import json
import sys

import pytest
import torch
from safetensors.torch import load_file

from gankit import config as config_mod
from gankit.models.registry import build_generator, class_labels
from gankit.training import augment
from gankit.training.launch import resume, train

from .conftest import digit_like, tiny_config, write_idx


@pytest.fixture(scope="module")
def digits_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("idx-digits")
    write_idx(root / "MNIST" / "raw", *digit_like(256))
    return root


def _config(digits_dir, **sets):
    """A tiny mlp run on the IDX digits: by default one step (32 images, batch 32), no evaluation."""
    return tiny_config(**{"data": "mnist", "data_dir": str(digits_dir), "subset": 32, "eval_every": 0, **sets})


def _train_rows(run):
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [r for r in rows if r["kind"] == "train"]


def _first_row(run):
    return _train_rows(run)[0]


def _checkpoint(run):
    return torch.load(run / "checkpoint.pt", weights_only=True)


# ---------------------------------------------------------------- penalties and learning rates


def test_gp_lambda_weights_the_gradient_penalty(tmp_path, digits_dir):
    first = {}
    for gp_lambda in (0.0, 3.0, 12.0):
        run = tmp_path / f"gp{gp_lambda:g}"
        train(_config(digits_dir, loss="wgan-gp", gp_lambda=gp_lambda), run, progress=False)
        first[gp_lambda] = _first_row(run)
    zero = first[0.0]
    # no penalty: the critic's loss is E D(G(z)) - E D(x), the raw scores that the log shows
    assert zero["loss_D"] == pytest.approx(zero["D(G(z))"] - zero["D(x)"], abs=1e-5)
    # the same weights, batch and interpolates at step 1: loss_D grows linearly in gp_lambda
    added = {lam: first[lam]["loss_D"] - zero["loss_D"] for lam in (3.0, 12.0)}
    assert added[3.0] > 0.01, "gp_lambda=3 added no penalty to the critic's loss"
    assert added[12.0] == pytest.approx(4 * added[3.0], rel=1e-3, abs=1e-5)
    for lam in (3.0, 12.0):  # the penalty changes nothing that D computes before it
        assert (first[lam]["D(x)"], first[lam]["D(G(z))"]) == (zero["D(x)"], zero["D(G(z))"])


@pytest.fixture(scope="module")
def hinge_runs(tmp_path_factory, digits_dir):
    """Two one-step hinge runs: the base one, and one with R1 (every step) and a D learning rate of its own."""
    root = tmp_path_factory.mktemp("hinge")
    runs = {"base": dict(loss="hinge"), "r1": dict(loss="hinge", r1_gamma=10.0, r1_every=1, lr_d=1e-4)}
    for name, sets in runs.items():
        train(_config(digits_dir, **sets), root / name, progress=False)
    return {name: root / name for name in runs}


def test_r1_penalty_is_added_to_d_loss(hinge_runs):
    base, r1 = _first_row(hinge_runs["base"]), _first_row(hinge_runs["r1"])
    assert (r1["D(x)"], r1["D(G(z))"]) == (base["D(x)"], base["D(G(z))"])  # the same D on the same batch
    # gamma / 2 * E||grad_x D(x)||^2 is positive for any D that depends on its input
    assert r1["loss_D"] - base["loss_D"] > 1e-4, "r1_gamma=10 left D's loss unchanged"


def test_lr_d_is_the_discriminators_learning_rate(hinge_runs):
    cfg = config_mod.resolve("simple-gan")
    base, own = _checkpoint(hinge_runs["base"]), _checkpoint(hinge_runs["r1"])
    assert [g["lr"] for g in base["opt_d"]["param_groups"]] == [cfg.lr]  # lr_d=0: the same as lr
    assert [g["lr"] for g in own["opt_d"]["param_groups"]] == [1e-4]
    assert [g["lr"] for g in own["opt_g"]["param_groups"]] == [cfg.lr]  # G keeps lr
    assert own["config"]["lr_d"] == 1e-4


# ---------------------------------------------------------------- DiffAugment


def _on_pixel_grid(x: torch.Tensor) -> torch.Tensor:
    """Per image: is every value k * 2/255 - 1 for a whole k, as a real uint8 image becomes in [-1, 1]?
    A generated image (tanh outputs) never is."""
    k = (x.detach().float() + 1) * 127.5
    return ((k - k.round()).abs() < 1e-3).flatten(1).all(1)


@pytest.fixture
def diff_augment_calls(monkeypatch):
    """Record what DiffAugment is applied to: wraps gankit.training.augment.diff_augment and every loaded gankit
    module's name for it (train imports it by name; after a restructuring another module may)."""
    original = augment.diff_augment
    calls = []

    def spy(x, *args, **kwargs):
        calls.append({"n": x.shape[0], "grad": x.requires_grad, "real": int(_on_pixel_grid(x).sum())})
        return original(x, *args, **kwargs)

    for name, module in list(sys.modules.items()):
        if (name == "gankit" or name.startswith("gankit.")) and getattr(module, "diff_augment", None) is original:
            monkeypatch.setattr(module, "diff_augment", spy)
    return calls


def test_diffaug_is_applied_to_reals_to_d_fakes_and_to_g_fakes(tmp_path, digits_dir, diff_augment_calls):
    train(_config(digits_dir, loss="hinge", diffaug="translation,cutout"), tmp_path / "run", progress=False)
    B = 32  # one step: a D step, then a G step (n_critic 1)
    assert diff_augment_calls, "DiffAugment was never applied"
    d_step = [c for c in diff_augment_calls if not c["grad"]]
    g_step = [c for c in diff_augment_calls if c["grad"]]
    d_real = sum(c["real"] for c in d_step)
    d_fake = sum(c["n"] - c["real"] for c in d_step)
    assert d_real == B, "the D step's real batch was not augmented"
    assert d_fake == B, "the D step's (detached) fake batch was not augmented"
    assert sum(c["n"] for c in g_step) == B and not any(c["real"] for c in g_step), \
        "the G step's fakes were not augmented (or not differentiably)"


def test_diffaug_changes_the_first_step(tmp_path, digits_dir, hinge_runs):
    run = tmp_path / "aug"
    train(_config(digits_dir, loss="hinge", diffaug="translation,cutout"), run, progress=False)
    aug, plain = _first_row(run), _first_row(hinge_runs["base"])  # the same run without diffaug
    assert aug["loss_D"] != plain["loss_D"] and aug["loss_G"] != plain["loss_G"]
    assert aug["D(x)"] != plain["D(x)"] and aug["D(G(z))"] != plain["D(G(z))"]  # D sees augmented images


# ---------------------------------------------------------------- resume


def test_resume_restores_the_logged_g_loss_between_g_steps(tmp_path, digits_dir):
    # 4 steps per epoch and a G step every 3rd: step 5, the first after resuming, is a D-only step that logs
    # the G loss of step 3, which only the checkpoint knows
    sets = dict(loss="wgan-gp", n_critic=3, subset=128)
    train(_config(digits_dir, **sets, epochs=2), tmp_path / "straight", progress=False)
    train(_config(digits_dir, **sets, epochs=1), tmp_path / "split", progress=False)
    resume(tmp_path / "split", {"epochs": 2}, progress=False)
    straight, split = _train_rows(tmp_path / "straight"), _train_rows(tmp_path / "split")
    assert [r["step"] for r in straight] == list(range(1, 9))
    g = [r["loss_G"] for r in straight]
    assert g[0] == g[1] == 0.0 and g[2] != 0.0  # no G step before step 3
    assert g[3] == g[4] == g[2] and g[5] != g[2]  # steps 4 and 5 show step 3's loss, step 6 its own
    assert [r["loss_G"] for r in split][4] == g[2], "the resumed run lost the stored G loss"
    assert split == straight  # every logged value of every step


# ---------------------------------------------------------------- the EMA generator's BatchNorm


def test_exported_ema_generator_has_batchnorm_statistics_of_its_own_weights(dcgan_run):
    cfg = config_mod.load(dcgan_run / "config.toml")
    assert cfg.ema > 0 and cfg.model == "dcgan"
    exported = load_file(str(dcgan_run / "generator.safetensors"))
    G = build_generator(cfg.model, cfg.z_dim, cfg.channels, cfg.image_size, cfg.num_classes, cfg.g_width)
    G.load_state_dict(exported)
    norms = {name: m for name, m in G.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert norms
    for name in norms:  # moved away from a fresh layer's statistics
        assert (exported[f"{name}.running_var"] - 1).abs().max() > 0.2, f"{name}: running_var left at 1"
        assert exported[f"{name}.running_mean"].abs().max() > 1e-3, f"{name}: running_mean left at 0"
    # the statistics these averaged weights produce on fresh noise (recomputed here, in train mode)
    for m in norms.values():
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    g = torch.Generator().manual_seed(12345)
    G.train()
    with torch.no_grad():
        for _ in range(4):
            labels = class_labels(256, cfg.num_classes)
            G(torch.randn(256, cfg.z_dim, generator=g), *([] if labels is None else [labels]))
    for name, m in norms.items():
        var, mean = exported[f"{name}.running_var"], exported[f"{name}.running_mean"]
        assert torch.allclose(var, m.running_var, rtol=0.15, atol=1e-4), name
        assert ((mean - m.running_mean).abs() <= 0.2 * m.running_var.sqrt() + 1e-4).all(), name
