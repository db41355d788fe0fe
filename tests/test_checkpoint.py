"""The checkpoint is Trainer.state_dict(): loading checks every key, type and shape, before anything is written."""

from __future__ import annotations

import shutil

import pytest
import torch

from gankit import config
from gankit.cli import main
from gankit.run import checkpoint, generator_file
from gankit.training.launch import Trainer, resume, train

from .conftest import snapshot, tiny_config


@pytest.fixture(scope="module")
def ema_run(tmp_path_factory):
    """A 1-epoch mlp run with an EMA generator (its checkpoint holds every kind of entry)."""
    run = tmp_path_factory.mktemp("ckpt") / "run"
    train(tiny_config(subset=64, ema=0.9, eval_every=0), run, progress=False)
    return run


def _damaged(ema_run, tmp_path, change):
    run = tmp_path / "run"
    shutil.copytree(ema_run, run)
    state = checkpoint.load_checkpoint(run)
    change(state)
    checkpoint.save_checkpoint(state, run)
    return run


def _other_model(state):
    g = train_state_of(tiny_config(subset=64, z_dim=32, ema=0.9, eval_every=0))
    state["generator"] = g["generator"]


def train_state_of(cfg):
    return Trainer(cfg, None, progress=False).state_dict()  # built, never trained or written


@pytest.mark.parametrize("change, message", [
    (_other_model, "its generator entry 'net.0.weight' has shape (256, 32) where this run's model has (256, 64)"),
    (lambda s: s.__setitem__("discriminator", torch.zeros(3)), "its 'discriminator' is a Tensor where a dict belongs"),
    (lambda s: s["generator"].pop("net.2.bias"), "its generator is another model: it lacks 'net.2.bias'"),
    (lambda s: s["discriminator"].__setitem__("extra.weight", torch.zeros(1)), "has 'extra.weight', which this run"),
    (lambda s: s.__setitem__("fixed_noise", torch.zeros(16, 7)),
     "fixed noise is a torch.float32 tensor of shape (16, 7)"),
    (lambda s: s.__setitem__("fixed_noise", torch.zeros(16)), "shape (16,), not N x 64 floats"),
    (lambda s: s.pop("rng"), "it lacks 'rng'"),
    (lambda s: s.__setitem__("rng", torch.zeros(3, dtype=torch.uint8)), "its rng is not a random generator state"),
    (lambda s: s.__setitem__("ema", {}), "this run keeps an EMA generator (ema=0.9) and the checkpoint holds none"),
    (lambda s: s.__setitem__("epoch", "1"), "its 'epoch' is a str where a int belongs"),
    (lambda s: s["opt_d"]["param_groups"].append(dict(s["opt_d"]["param_groups"][0])), "its opt_d does not fit"),
    (lambda s: s["opt_g"]["state"][0].__setitem__("exp_avg", torch.zeros(2)),
     "its opt_g holds 'exp_avg' (Tensor (2,)) for a parameter of shape (256, 64)"),
    (lambda s: s["opt_g"]["state"][0].__setitem__("step", torch.zeros(3)), "holds 'step' (Tensor (3,))"),
    (lambda s: s["opt_g"]["state"][0].__setitem__("exp_avg", "x"), "holds 'exp_avg' (str ())"),
    (lambda s: s["opt_g"].__setitem__("state", None), "its opt_g is not an optimizer's state"),
    (lambda s: s.__setitem__("step", 2**70), "must be in [0, 10000000] and [0, 2**53]"),
    (lambda s: s.__setitem__("fixed_noise", torch.zeros(1, 64).expand(10**8, 64)), "shape (100000000, 64)"),
    (lambda s: s.__setitem__("quality", {"best": 1}), "quality record holds keys gankit does not write"),
])
def test_a_checkpoint_that_does_not_fit_is_one_line_and_changes_nothing(ema_run, tmp_path, capsys, change, message):
    run = _damaged(ema_run, tmp_path, change)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {run / 'checkpoint.pt'} cannot be resumed" in err
    assert message in err
    assert snapshot(run) == before  # config.toml, metrics.jsonl and the checkpoint untouched


def test_state_dict_round_trips_into_a_fresh_trainer(ema_run):
    state = checkpoint.load_checkpoint(ema_run)
    cfg = config.override(generator_file.load_run_config(ema_run), {"epochs": 2})
    trainer = Trainer(cfg, None, progress=False)
    trainer.load_state_dict(state)
    again = trainer.state_dict()
    assert set(again) == set(state) == set(checkpoint.STATE_KEYS) | set(checkpoint.OPTIONAL_KEYS)
    for key in ("generator", "discriminator"):
        assert all(torch.equal(again[key][k], state[key][k]) for k in state[key])
    assert all(torch.equal(again["ema"]["model"][k], v) for k, v in state["ema"]["model"].items())
    assert (again["epoch"], again["step"]) == (1, 2) and torch.equal(again["rng"], state["rng"])
    assert again["opt_d"]["param_groups"][0]["lr"] == cfg.lr


def test_crafted_optimizer_settings_are_not_taken(ema_run, tmp_path):
    # the config decides the hyperparameters; a checkpoint brings only Adam's state
    def craft(state):
        state["opt_g"]["param_groups"][0].update(lr="fast", betas=(2.0,), eps=-1)
    run = _damaged(ema_run, tmp_path, craft)
    resume(run, {"epochs": 2}, progress=False)
    group = checkpoint.load_checkpoint(run)["opt_g"]["param_groups"][0]
    cfg = generator_file.load_run_config(run)
    assert (group["lr"], tuple(group["betas"]), group["eps"]) == (cfg.lr, (cfg.beta1, cfg.beta2), 1e-8)


def test_a_checkpoint_from_before_the_optional_keys_still_resumes(ema_run, tmp_path):
    # written before loss_g, rng_device and quality were kept: resumes with their defaults
    run = _damaged(ema_run, tmp_path, lambda s: [s.pop(k) for k in ("loss_g", "rng_device", "quality", "config")])
    result = resume(run, {"epochs": 2}, progress=False)
    assert result.epochs == 2 and checkpoint.load_checkpoint(run)["epoch"] == 2


# Review of gankit.training.adam: per-parameter states that load but cannot be trained from, and states that load into
# nothing.
@pytest.mark.parametrize("change, message", [
    (lambda s: s["opt_g"]["state"][0].pop("step"), "opt_g"),
    (lambda s: s["opt_g"]["state"][0].pop("exp_avg"), "opt_g"),
    (lambda s: s["opt_g"]["state"][0].pop("exp_avg_sq"), "opt_g"),
    (lambda s: s["opt_g"]["state"].__setitem__(0, [("step", torch.tensor(1.0))]), "opt_g"),
    (lambda s: s["opt_d"]["state"][0].__setitem__("exp_avg", s["opt_d"]["state"][0]["exp_avg"].to_sparse()),
     "opt_d"),
    (lambda s: s["opt_g"].__setitem__("state", {str(k): v for k, v in s["opt_g"]["state"].items()}), "opt_g"),
    (lambda s: s["opt_g"]["state"].__setitem__(99, s["opt_g"]["state"].pop(0)), "opt_g"),
    (lambda s: s["opt_g"]["param_groups"][0].__setitem__("params", ["a", "b", "c", "d"]), "opt_g"),
    (lambda s: s["opt_g"]["state"][0].__setitem__("step", torch.tensor(-3.0)), "opt_g"),
    (lambda s: s["opt_g"]["state"][0]["exp_avg_sq"].view(-1)[0].fill_(-1.0), "opt_g"),
    (lambda s: s["opt_d"]["state"][0]["exp_avg"].view(-1)[0].fill_(float("nan")), "opt_d"),
    (lambda s: s["opt_g"]["state"].__setitem__(True, s["opt_g"]["state"].pop(1)), "opt_g"),
], ids=["no-step", "no-exp_avg", "no-exp_avg_sq", "pairs", "sparse-moment", "str-keys", "index-99", "str-params",
        "negative-step", "negative-exp_avg_sq", "nan-moment", "bool-key"])
def test_an_adam_state_that_cannot_be_trained_from_is_one_line_not_a_traceback_or_a_silent_reset(
        ema_run, tmp_path, capsys, change, message):
    run = _damaged(ema_run, tmp_path, change)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"checkpoint {run / 'checkpoint.pt'} cannot be resumed" in err
    assert f"its {message}" in err
    assert snapshot(run) == before


def test_an_empty_per_parameter_state_resumes_as_torch_optim_did(ema_run, tmp_path):
    # torch.optim.Adam (gankit before gankit.training.adam) treats {} as "no state yet" and starts that parameter afresh
    run = _damaged(ema_run, tmp_path, lambda s: s["opt_g"]["state"].__setitem__(0, {}))
    assert resume(run, {"epochs": 2}, progress=False).epochs == 2


def test_moments_saved_in_another_memory_layout_update_like_contiguous_ones():
    # torch.save keeps strides; the fused kernel walks memory flat, so moments must take their parameter's layout
    from gankit.training.adam import Adam
    torch.manual_seed(0)
    start, grad = torch.randn(4, 3), torch.randn(4, 3)
    exp_avg, exp_avg_sq = torch.randn(4, 3), torch.rand(4, 3)

    def one_step(layout):
        p = torch.nn.Parameter(start.clone())
        opt = Adam([p], lr=0.1)
        saved = {"step": torch.tensor(3.0), "exp_avg": layout(exp_avg), "exp_avg_sq": layout(exp_avg_sq)}
        opt.load_state_dict({"state": {0: saved}, "param_groups": [{"params": [0]}]})
        opt.update([p], [grad.clone()])
        return p.detach()

    assert torch.equal(one_step(lambda t: t.clone()), one_step(lambda t: t.t().contiguous().t()))


# Mutation pass: integer moments (which a copy into float would hide), a key beyond Adam's three (amsgrad's),
# and the values Adam does produce: a zero second moment (a gradient entry that has always been 0) resumes.
@pytest.mark.parametrize("change, message", [
    (lambda s: s["opt_g"]["state"][0].__setitem__("exp_avg_sq", s["opt_g"]["state"][0]["exp_avg_sq"].long()),
     "its opt_g holds 'exp_avg_sq' (Tensor (256, 64)) for a parameter of shape (256, 64): not Adam's state"),
    (lambda s: s["opt_d"]["state"][1].__setitem__("max_exp_avg_sq", s["opt_d"]["state"][1]["exp_avg_sq"].clone()),
     "its opt_d holds ['exp_avg', 'exp_avg_sq', 'max_exp_avg_sq', 'step'] for a parameter of shape"),
], ids=["integer-moment", "amsgrad-key"])
def test_an_adam_state_of_another_kind_is_refused_in_one_line(ema_run, tmp_path, capsys, change, message):
    run = _damaged(ema_run, tmp_path, change)
    before = snapshot(run)
    assert main(["train", "--resume", str(run), "--epochs", "2", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert snapshot(run) == before


def test_zero_second_moments_resume(ema_run, tmp_path):
    def zeroed(state):
        st = state["opt_g"]["state"][0]
        st["exp_avg"].view(-1)[:8] = 0.0
        st["exp_avg_sq"].view(-1)[:8] = 0.0

    run = _damaged(ema_run, tmp_path, zeroed)
    assert resume(run, {"epochs": 2}, progress=False).epochs == 2 and checkpoint.load_checkpoint(run)["epoch"] == 2
