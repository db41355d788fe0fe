"""Behaviour that a mutation pass found unpinned (issue 25, class 10): each test fails on one plausible change.

The step tests run AutogradStep on hand-made networks whose penalties are known in closed form: D(x) =
s * ||x||^2 / 4 has input gradient s * x / 2, so with reals all 1 and fakes all 0 (4 pixels) R1 is 1 at the
reals and 0 at the fakes, and the gradient penalty at eps * real + (1 - eps) * fake is (eps - 1)^2.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from gankit import config
from gankit.detect import inputs, perturb, store
from gankit.detect.scores import detection_metrics
from gankit.devices import Rows, World
from gankit.errors import GankitError
from gankit.training import budget, distributed
from gankit.training.losses import LOSSES, gradient_penalty, r1_penalty
from gankit.training.steps import AutogradStep

from .conftest import tiny_config
from .test_safety import _cli

N = 8  # rows of the hand-made batches


class _ZeroG(nn.Module):
    """A generator whose fakes are all 0 (N x 1 x 2 x 2), with a weight for its optimizer."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4, 4))

    def forward(self, z):
        return (z @ self.w).view(-1, 1, 2, 2)


class _SquareD(nn.Module):
    """D(x) = s * ||x||^2 / 4 (s = 1 at first): input gradient s * x / 2."""

    def __init__(self):
        super().__init__()
        self.s = nn.Parameter(torch.ones(()))

    def forward(self, x):
        return self.s * x.pow(2).flatten(1).sum(1) / 4


def _step(G, D, loss="bce", **kw) -> AutogradStep:
    opt_g, opt_d = (torch.optim.Adam(m.parameters(), lr=1e-3) for m in (G, D))
    return AutogradStep(G, D, opt_g, opt_d, LOSSES[loss], lambda x: x, torch.Generator().manual_seed(0), **kw)


def _batch():
    return torch.ones(N, 1, 2, 2), torch.randn(N, 4, generator=torch.Generator().manual_seed(1))


def _loss_d(loss="bce", r1=False, **kw) -> float:
    real, z = _batch()
    return _step(_ZeroG(), _SquareD(), loss, **kw)(real, None, z, True, r1)[0].item()


# ------------------------------------------------------------------ the penalties in the step (mutants 1-3)


def test_r1_is_taken_at_the_reals_not_at_the_fakes():
    assert r1_penalty(_SquareD(), torch.ones(N, 1, 2, 2)).item() == pytest.approx(1.0)
    assert r1_penalty(_SquareD(), torch.zeros(N, 1, 2, 2)).item() == 0.0
    # in the step: R1 at the reals adds r1_weight * 1; at the fakes it would add nothing
    added = _loss_d(r1=True, r1_weight=3.0) - _loss_d(r1=False, r1_weight=3.0)
    assert added == pytest.approx(3.0, rel=1e-5)


def test_the_steps_gradient_penalty_interpolates_real_with_fake():
    lam = 10.0
    added = _loss_d("wgan-gp", gp_lambda=lam) - _loss_d("wgan-gp", gp_lambda=0.0)
    # the step's generator draws the mixing weights first: eps ~ U(0, 1) per row, the penalty (eps - 1)^2
    eps = torch.rand(N, 1, 1, 1, generator=torch.Generator().manual_seed(0)).flatten()
    expected = lam * (eps - 1).pow(2).mean().item()
    assert expected > 0.5  # real with real (or fake with fake: lam * 1) would give 0 (or 10)
    assert added == pytest.approx(expected, rel=1e-5)
    # the function itself, per row: real with real is 0 here, real with fake is not
    real, fake = torch.ones(N, 1, 2, 2), torch.zeros(N, 1, 2, 2)
    assert gradient_penalty(_SquareD(), real, fake, torch.Generator().manual_seed(0)).item() == pytest.approx(
        (eps - 1).pow(2).mean().item(), rel=1e-5)


def _trainer(tmp_path: Path, name: str, **overrides):
    from gankit.training.trainer import Trainer

    return Trainer(tiny_config(eval_every=0, **overrides), tmp_path / name, progress=False)


def test_lazy_r1_is_scaled_by_its_interval(tmp_path):
    # at step 0 each trainer adds R1: gamma / 2 * r1_every times the same penalty (same seed, same batch)
    losses = {}
    for every, gamma in ((1, 0.0), (1, 10.0), (4, 10.0)):
        trainer = _trainer(tmp_path, f"r1-{every}-{gamma}", r1_gamma=gamma, r1_every=every, fused=False)
        assert type(trainer.gan_step) is AutogradStep
        real, y = next(iter(trainer.batches.epoch(0)))
        losses[every, gamma] = trainer.train_step(real, y)[0].item()
    every_step = losses[1, 10.0] - losses[1, 0.0]
    assert every_step > 1e-4
    assert losses[4, 10.0] - losses[1, 0.0] == pytest.approx(4 * every_step, rel=1e-3)


# ------------------------------------------------------------------ BatchNorm D (mutant 4)


def test_a_batchnorm_d_sees_real_and_fake_batches_apart():
    D = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(4), nn.Linear(4, 1))
    seen = []
    D[1].register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
    real, z = _batch()
    _step(_ZeroG(), D)(real, None, z, False, False)  # a D step only
    assert [len(x) for x in seen] == [N, N], "real and fake must be normalized by their own statistics"
    assert torch.equal(seen[0], real.flatten(1)) and torch.equal(seen[1], torch.zeros(N, 4))


# ------------------------------------------------------------------ EMA after the step (mutant 5)


def test_the_ema_averages_the_weights_after_the_optimizer_step(tmp_path):
    trainer = _trainer(tmp_path, "ema", ema=0.9)
    before = [p.detach().clone() for p in trainer.ema.model.parameters()]
    assert trainer.ema.current_decay() == pytest.approx(0.1)  # the warm-up's first decay
    real, y = next(iter(trainer.batches.epoch(0)))
    trainer.train_step(real, y)
    after = [p.detach() for p in trainer.G.parameters()]
    for e, b, g in zip(trainer.ema.model.parameters(), before, after):
        assert not torch.equal(g, b)  # G moved
        assert torch.allclose(e, 0.1 * b + 0.9 * g, atol=1e-7), "the EMA must take G's weights after its step"


def test_n_critic_d_steps_come_before_each_g_step_and_its_ema_update(tmp_path):
    trainer = _trainer(tmp_path, "critic", loss="hinge", n_critic=2, ema=0.9)
    g0 = [p.detach().clone() for p in trainer.G.parameters()]
    batches = iter(trainer.batches.epoch(0))
    trainer.train_step(*next(batches))  # step 1: D only
    assert all(torch.equal(p, q) for p, q in zip(trainer.G.parameters(), g0)) and trainer.ema.updates == 0
    trainer.train_step(*next(batches))  # step 2: D, then G, then the EMA
    assert not all(torch.equal(p, q) for p, q in zip(trainer.G.parameters(), g0)) and trainer.ema.updates == 1


# ------------------------------------------------------------------ the time limit is rank 0's (mutant 6)


def test_every_rank_stops_on_rank_0s_clock(tmp_path, monkeypatch):
    # This rank's own clock never runs out; rank 0's (the agreement's answer) does after 3 checks. A rank that
    # decided on its own clock would train on for all 5 epochs while the others stop.
    def own_clock(self):
        return False

    monkeypatch.setattr(budget.Budget, "out_of_time", own_clock)
    real_shared, asked = distributed.shared, []

    def agreement(world, decide):  # what rank 0 broadcasts; every other decision passes through
        if getattr(decide, "__func__", None) is own_clock:
            asked.append(1)
            return len(asked) > 3
        return real_shared(world, decide)

    monkeypatch.setattr(distributed, "shared", agreement)
    from gankit.training.launch import train

    result = train(tiny_config(epochs=5, time_limit=1e6, eval_every=0), tmp_path / "run", progress=False)
    assert result.steps == 4 and result.epochs == 1 and "time limit" in result.stopped


def test_the_out_of_time_decision_is_taken_through_the_agreement():
    from gankit.training.trainer import Trainer

    calls = []

    class _Budget:
        def out_of_time(self):
            return False  # this rank's own clock

    fake = type("T", (), {})()
    fake.cfg, fake.world, fake.budget = tiny_config(time_limit=5.0), World(1, 1, 2), _Budget()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(distributed, "shared", lambda world, decide: calls.append((world, decide)) or True)
        assert Trainer.out_of_time(fake) is True  # rank 0 said so
    assert calls and calls[0][0] == World(1, 1, 2)


# ------------------------------------------------------------------ no fused step under torchrun (mutant 7)


def test_the_plan_never_fuses_the_step_over_several_processes():
    simple = config.resolve_for_data(tiny_config(), 0, 1)
    assert config.plan(simple, "cpu", 1).fused
    assert not config.plan(simple, "cpu", 2).fused
    assert not config.plan(simple, "cpu", 8).fused


def test_a_trainer_among_several_processes_takes_the_autograd_step(tmp_path):
    # one gloo process standing for rank 0 of 2 (the collectives of a group of one return at once)
    import torch.distributed as dist

    from gankit.training.trainer import Trainer

    assert not dist.is_initialized()
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'group'}", rank=0, world_size=1)
    try:
        trainer = Trainer(tiny_config(eval_every=0), tmp_path / "run", progress=False, world=World(0, 0, 2))
        assert type(trainer.gan_step) is AutogradStep
        assert isinstance(trainer.gan_step.d_run, nn.parallel.DistributedDataParallel)
    finally:
        dist.destroy_process_group()


# ------------------------------------------------------------------ ema=1 refused (mutant 8)


@pytest.mark.parametrize("value", [1.0, 1.5, 0.4])
def test_an_ema_decay_of_one_or_outside_its_range_is_refused(value):
    with pytest.raises(GankitError, match=r"ema must be 0 \(off\) or a decay in \[0.5, 1\)"):
        tiny_config(ema=value)


def test_ema_1_is_one_line_from_the_cli(tmp_path, capsys):
    code, _, err = _cli(capsys, "train", "--set", "ema=1", "--out", tmp_path / "run", "--no-progress")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "ema" in err
    assert not (tmp_path / "run").exists()
    assert config.resolve("simple-gan", ema=0.999).ema == 0.999 and config.resolve("simple-gan", ema=0.5).ema == 0.5


# ------------------------------------------------------------------ a score of exactly 0.5 (mutant 9)


def test_a_score_of_exactly_one_half_is_called_generated():
    # scores are P(generated); the threshold is inclusive: 0.5 counts as generated (docs/detect.md)
    m = detection_metrics(np.array([0, 1]), np.array([0.5, 0.5]))
    assert (m["real_acc"], m["fake_acc"], m["acc"]) == (0.0, 1.0, 0.5)
    just_below = np.nextafter(0.5, 0)
    m = detection_metrics(np.array([0, 1]), np.array([just_below, just_below]))
    assert (m["real_acc"], m["fake_acc"]) == (1.0, 0.0)


# ------------------------------------------------------------------ D's hashes: all it trained on (mutant 10)


def test_the_discriminator_detector_records_every_image_its_run_trained_on(mlp_run, tmp_path, capsys,
                                                                         monkeypatch):
    from gankit.data import loading
    from gankit.detect import training
    from gankit.run.generator_file import load_run_config

    monkeypatch.setattr(training, "CALIBRATION", 40)  # fewer calibration images than trained ones
    code, _, err = _cli(capsys, "detect", "train", "--method", "discriminator", "--run", mlp_run, "--out",
                        tmp_path / "d", "--no-progress")
    assert code == 0, err
    data = loading.load_for(load_run_config(mlp_run))
    recorded = store.read(tmp_path / "d").hashes("real")
    assert len(data) == 256 and len(recorded) == 256
    assert sorted(recorded.tolist()) == sorted(inputs.image_hashes(data.images).tolist())


# ------------------------------------------------------------------ blur, then JPEG (mutant 11)


def _pictures() -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(3, 3, 32, 32, dtype=torch.uint8)
    x[:, :, 8:24, 8:24] = 255  # hard edges: blur and JPEG do not commute on them
    return (x.int() + torch.randint(0, 40, x.shape, generator=gen)).clamp(0, 255).to(torch.uint8)


def test_the_detector_augmentation_blurs_before_it_compresses():
    x = _pictures()
    blur_first = perturb.jpeg(perturb.blur(x, 2.0), 40)
    jpeg_first = perturb.blur(perturb.jpeg(x, 40), 2.0)
    assert not torch.equal(blur_first, jpeg_first)
    out = perturb.augment(x, torch.Generator().manual_seed(0), p=1.0, sigma=(2.0, 2.0), quality=(40, 40))
    assert torch.equal(out, blur_first)
    assert torch.equal(perturb.perturb(x, jpeg_quality=40, blur_sigma=2.0), blur_first)  # detect eval's --jpeg --blur



# ------------------------------------------------------------------ own mutation pass over losses.py and steps.py


def test_least_squares_and_the_scores_of_each_loss():
    # Mao et al.'s 1/2 factors: D (E(D(x) - 1)^2 + E D(G(z))^2) / 2, G E(D(G(z)) - 1)^2 / 2
    zero = torch.zeros(3)
    assert LOSSES["lsgan"].d(zero, zero).item() == pytest.approx(0.5)
    assert LOSSES["lsgan"].d(zero, torch.ones(3)).item() == pytest.approx(1.0)
    # only bce's D outputs are logits, whose sigmoid is a probability; the others are raw scores
    assert [name for name, loss in LOSSES.items() if loss.probability] == ["bce"]
    assert LOSSES["bce"].score(torch.zeros(1)).item() == 0.5
    for name in ("lsgan", "hinge", "wgan-gp"):
        assert LOSSES[name].score(torch.tensor([-2.0, 3.0])).tolist() == [-2.0, 3.0], name


def test_each_rank_takes_its_rows_of_the_penalty_draw():
    # rank 1 of 2: the mixing weights are rows N..2N of one draw for the global batch of 2N (as one process)
    rows = Rows(2 * N, N, 2 * N)
    eps = torch.rand(2 * N, 1, 1, 1, generator=torch.Generator().manual_seed(0)).flatten()[N:]
    expected = (eps - 1).pow(2).mean().item()
    real, fake = torch.ones(N, 1, 2, 2), torch.zeros(N, 1, 2, 2)
    assert gradient_penalty(_SquareD(), real, fake, torch.Generator().manual_seed(0), rows).item() == \
        pytest.approx(expected, rel=1e-5)
    added = _loss_d("wgan-gp", gp_lambda=1.0, rows=rows) - _loss_d("wgan-gp", gp_lambda=0.0, rows=rows)
    assert added == pytest.approx(expected, rel=1e-5)


def _twice_plus_one(x):
    return 2 * x + 1  # an "augmentation" that moves every image: reals 1 -> 3, fakes 0 -> 1


def test_the_penalties_are_taken_at_the_augmented_images_d_saw():
    # R1 at the augmented reals (3): ||3/2||^2 * 4 pixels = 9, where at the raw reals (1) it is 1 (as
    # StyleGAN2-ADA: D's gradient at the images it judged)
    real, z = _batch()

    def step(loss, **kw):
        s = _step(_ZeroG(), _SquareD(), loss, **kw)
        s.augment = _twice_plus_one
        return s

    added = (step("bce", r1_weight=1.0)(real, None, z, True, True)[0]
             - step("bce", r1_weight=1.0)(real, None, z, True, False)[0]).item()
    assert added == pytest.approx(9.0, rel=1e-5)
    # the gradient penalty between the augmented real (3) and fake (1): x_hat = 1 + 2 eps, a penalty of 4 eps^2
    eps = torch.rand(N, generator=torch.Generator().manual_seed(0))
    added = (step("wgan-gp", gp_lambda=1.0)(real, None, z, True, False)[0]
             - step("wgan-gp", gp_lambda=0.0)(real, None, z, True, False)[0]).item()
    assert added == pytest.approx(4 * eps.pow(2).mean().item(), rel=1e-5)


def test_the_g_step_judges_augmented_fakes():
    # hinge: loss_G = -E D(aug(G(z))) = -s * ||1||^2 / 4 = -s with D's weight after its step; without the
    # augmentation the fakes (0) would give 0
    real, z = _batch()
    D = _SquareD()
    step = _step(_ZeroG(), D, "hinge")
    step.augment = _twice_plus_one
    loss_g = step(real, None, z, True, False)[1].item()
    assert loss_g == pytest.approx(-D.s.item(), rel=1e-5) and abs(loss_g) > 0.5


class _CondG(nn.Module):
    """A conditional generator whose fake for label y is the constant image -(y + 1)."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(4, 4))

    def forward(self, z, y):
        return (z @ self.w).view(-1, 1, 2, 2) - (y + 1).float().view(-1, 1, 1, 1)


class _CondD(nn.Module):
    """D(x, y) = s * (1 + y) * ||x||^2 / 4; records what it is called with. batchnorm: holds an (unused)
    BatchNorm, so the step runs it on real and fake apart."""

    def __init__(self, batchnorm: bool = False):
        super().__init__()
        self.s = nn.Parameter(torch.ones(()))
        self.norm = nn.BatchNorm1d(4) if batchnorm else None
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def forward(self, x, y):
        self.calls.append((x.detach().clone(), y.clone()))
        return self.s * (1 + y.float()) * x.pow(2).flatten(1).sum(1) / 4


@pytest.mark.parametrize("batchnorm", [False, True])
def test_every_image_d_judges_comes_with_its_own_label(batchnorm):
    # reals for label y are the constant image y + 1, fakes -(y + 1): |image| - 1 is the label it belongs to
    y = torch.arange(N) % 3
    real = (y + 1).float().view(-1, 1, 1, 1).expand(N, 1, 2, 2).contiguous()
    D = _CondD(batchnorm)
    _step(_CondG(), D)(real, y, torch.randn(N, 4), True, False)
    assert len(D.calls) == (3 if batchnorm else 2)  # the D step (one call or two), the G step
    seen = sum(len(x) for x, _ in D.calls)
    assert seen == 3 * N
    for x, labels in D.calls:
        assert torch.equal(x.flatten(1)[:, 0].abs() - 1, labels.float()), "an image judged under another label"


def test_r1_of_a_conditional_d_is_taken_with_the_batchs_labels():
    # R1 of D(x, y) at reals 1: ((1 + y) / 2)^2 * 4 pixels = (1 + y)^2, here on average (1 + 4) / 2
    y = torch.arange(N) % 2
    real, z = torch.ones(N, 1, 2, 2), torch.randn(N, 4)
    with_r1 = _step(_CondG(), _CondD(), r1_weight=1.0)(real, y, z, True, True)[0].item()
    without = _step(_CondG(), _CondD(), r1_weight=1.0)(real, y, z, True, False)[0].item()
    assert with_r1 - without == pytest.approx(2.5, rel=1e-5)
