"""The training loop, readable top to bottom.

    data (uint8, on the device) -> batch (float in [-1, 1], augmented) -> D step -> G step -> EMA -> log
    -> end of epoch: fixed-noise grid, generator export, evaluation, checkpoint -> finish: plots, GIF, summary

A `Trainer`'s parts are named for what they do: build (`__init__`), restore (`load_state_dict`), `train_step`,
`end_epoch`, `finish`. Everything a checkpoint holds is `Trainer.state_dict()`; the math of one step lives in
gankit.training.steps (autograd) and gankit.training.fused (the hand-written simple-GAN step), called as
`self.gan_step`; `self.G_sampled` is what grids, evaluations and exports draw from (the EMA average, or G).
gankit.training.launch starts and resumes runs with it (the run directory's lock, torchrun's processes).
"""

from __future__ import annotations

import contextlib
import errno
import time
from pathlib import Path
from typing import Any

import torch

from gankit import config, console
from gankit import images as images_mod
from gankit.config import Config
from gankit.data import batches, loading
from gankit.devices import Rows, World, resolve_device
from gankit.errors import GankitError
from gankit.files import atomic_write, own_folder
from gankit.models.registry import class_labels, from_config
from gankit.quality.evaluator import MIN_IMAGES, held_out
from gankit.quality.tracking import Quality, QualityState
from gankit.run import checkpoint, layout
from gankit.run.metrics_log import SCALARS, QuietLog, TrainingLog
from gankit.training import budget, distributed
from gankit.training.ada import ADA, ADA_SCALARS
from gankit.training.adam import adam, load_checked
from gankit.training.augment import Chain, DiffAugment, parse_policy
from gankit.training.ema import EMA
from gankit.training.epoch_end import EpochEnd
from gankit.training.fused import FusedMLPStep
from gankit.training.health import REMEDIES, Diverged, Finding, Health
from gankit.training.losses import LOSSES
from gankit.training.result import RunResult
from gankit.training.steps import AutogradStep, Step


class Trainer(EpochEnd):
    """One run's training state and the steps that change it."""

    # ------------------------------------------------------------------ build
    def __init__(self, cfg: Config, run_dir: Path, progress: bool = True, device: torch.device | None = None,
                 world: World = World()):
        """world: this process among torchrun's (rank 0 writes, prints and evaluates); device: this rank's."""
        self.run_dir, self.world, self.progress = run_dir, world, progress and world.main
        self.device = device or resolve_device(cfg.device)
        if cfg.batch_size % world.size:
            raise GankitError(f"batch_size {cfg.batch_size} (the global batch) does not split evenly over "
                              f"{world.size} processes: use a multiple of {world.size}")
        self.rows = Rows.of(world, cfg.batch_size)  # this rank's rows of every global batch
        # Data: decoded once into a uint8 tensor on the training device; the config's "auto" values decided.
        self.data = data = self._load_data(cfg)
        classes = len(data.classes or ()) if data.labels is not None else 0
        self.cfg = cfg = config.resolve_for_data(cfg, classes, data.images.shape[1])
        self.plan = config.plan(cfg, self.device.type, world.size)
        if cfg.cpu_bf16 is True and self.device.type == "cpu" and not self.plan.autocast:
            self.say("cpu_bf16: this CPU has no native bf16 (no avx512_bf16 or amx_bf16 flag), where bf16 runs "
                     "tens of times slower than fp32: training in fp32")
        self.loss = LOSSES[cfg.loss]
        self.epoch = self.step = self.saved_epoch = 0
        self._build_models()
        self.rng = torch.Generator(self.device).manual_seed(cfg.seed)  # noise, augmentation and penalty draws
        # the fixed-noise grid: sample_count images, rounded up to whole rows of one column per class
        k = cfg.num_classes
        count = -(-cfg.sample_count // k) * k if 0 < k <= cfg.sample_count else cfg.sample_count
        self.fixed_noise = torch.randn(count, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
        # ADA: the augmentation's probability, adapted from D's outputs on the reals
        self.ada = ADA(cfg.ada_target, cfg.ada_kimg, cfg.batch_size, self.device, self.rng, self.rows) \
            if cfg.ada else None
        self.gan_step = self._build_step()  # (real, labels, noise, g_step, r1) -> four scalars
        labels = data.labels.to(self.device) if cfg.num_classes else None
        # in-memory data moves to the device once; a mapped pack stays in host memory, gathered per batch
        images = data.images if data.pack else data.images.to(self.device)
        self.held = held = held_out(data, cfg.holdout)  # never trained on: the floor's and C_T's new real images
        keep = None if not len(held) else torch.nonzero(~torch.isin(torch.arange(len(data)), held)).flatten()
        self.batches = batches.Batches(images, cfg.batch_size, cfg.seed, cfg.rotation, cfg.hflip, self.rng,
                                        self.memory_format, labels, self.rows, self.device, keep)
        if cfg.kimg:  # a budget of images shown: the epochs it spans on this data (the last may end part way)
            self.cfg = cfg = config.override(cfg, {"epochs": budget.epochs_for(cfg, len(self.batches))})
        self.quality = self._build_quality() if world.main else None
        self.health = Health(judge_d=self.loss.probability)
        self.resumed = False  # continuing a run directory (with or without a checkpoint)
        self.started = False  # the run directory has been taken up (_open_run_dir)
        self.interrupts = distributed.Interrupts(world)

    def _load_data(self, cfg: Config) -> loading.ImageData:
        """The source, decoded once: a folder is packed by rank 0 (if its cache holds no pack) before any rank
        maps it."""
        say = console.say if self.world.main else None
        distributed.shared(self.world, lambda: loading.prepare(cfg.data, cfg.image_size, cfg.channels, say,
                                                               cfg.background))
        return loading.load_for(cfg)

    def _build_models(self) -> None:
        """G and D (seeded), their Adam optimizers, and the EMA generator that grids, evaluations and exports use."""
        cfg = self.cfg
        torch.manual_seed(cfg.seed)
        G, D = from_config(cfg)
        self.memory_format = torch.channels_last if self.plan.channels_last else torch.contiguous_format
        self.G, self.D = G.to(self.device, memory_format=self.memory_format), D.to(self.device,
                                                                                   memory_format=self.memory_format)
        self.ema = EMA(self.G, cfg.ema) if cfg.ema else None  # plain BatchNorm: recalibrated on rank 0 alone
        if self.world.several:  # BatchNorm statistics over the global batch (the same parameters, synced)
            self.G = distributed.synchronize_batchnorm(self.G, self.device)
            self.D = distributed.synchronize_batchnorm(self.D, self.device)
        betas = (cfg.beta1, cfg.beta2)
        self.opt_g = adam(self.G.parameters(), lr=cfg.lr, betas=betas)  # torch's fused Adam, not torch.optim's
        self.opt_d = adam(self.D.parameters(), lr=cfg.lr_d or cfg.lr, betas=betas)  # import (gankit.training.adam)
        # what grids, evaluations and exports draw from: the EMA average, or G itself without EMA
        self.G_sampled = self.ema.model if self.ema else self.G

    def _build_step(self) -> Step:
        """The step implementation the plan chose: the hand-written simple-GAN step, or autograd."""
        cfg = self.cfg
        if self.plan.fused:
            return FusedMLPStep(self.G, self.D, self.opt_g, self.opt_d, cfg.label_smoothing)
        g_run, d_run = distributed.wrap(self.world, self.device, self.G, self.D)  # DDP: G and D separately
        # the G step needs no D gradients, so it runs D itself, without DDP's synchronization
        d_for_g = self.D if self.world.several else None
        if self.plan.compile:
            g_run, d_run = torch.compile(g_run), torch.compile(d_run)
            d_for_g = None if d_for_g is None else torch.compile(d_for_g)
        augment = DiffAugment(parse_policy(cfg.diffaug), self.rng, self.rows)  # on real and fake, before D
        if self.ada:  # adaptive augmentation after any DiffAugment
            augment = Chain(augment, self.ada) if cfg.diffaug else self.ada
        return AutogradStep(self.G, self.D, self.opt_g, self.opt_d, self.loss, augment, self.rng,
                            label_smoothing=cfg.label_smoothing, gp_lambda=cfg.gp_lambda,
                            r1_weight=cfg.r1_gamma / 2 * cfg.r1_every, autocast=self.plan.autocast,
                            g_run=g_run, d_run=d_run, d_for_g=d_for_g, rows=self.rows)

    def _build_quality(self) -> Quality | None:
        cfg = self.cfg
        if not cfg.eval_every:
            return None
        if len(self.data) < MIN_IMAGES:
            self.say(f"{cfg.data} holds {len(self.data)} images, too few to measure quality against "
                     f"(at least {MIN_IMAGES}): quality metrics are off")
            return None
        return Quality.for_data(self.data, cfg.evaluator, cfg.eval_samples, cfg.early_stop, self.progress,
                                cfg.evaluator_kind, len(self.held))

    def say(self, message: str) -> None:
        if self.progress:
            console.say(message)

    # ------------------------------------------------------------------ checkpoint state
    def state_dict(self) -> dict[str, Any]:
        """Everything a checkpoint holds: the one place that says so (load_state_dict reads the same keys)."""
        return {
            "generator": self.G.state_dict(), "discriminator": self.D.state_dict(),
            "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict(),
            "ema": self.ema.state_dict() if self.ema else {}, "ada": self.ada.state_dict() if self.ada else {},
            "loss_g": self.gan_step.loss_g.detach().float().cpu(),
            "epoch": self.epoch, "step": self.step, "rng": self.rng.get_state(), "rng_device": self.device.type,
            "fixed_noise": self.fixed_noise.cpu(), "config": self.cfg.to_dict(), "data": loading.identity(self.data),
            "quality": self.quality.state_dict() if self.quality else {},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore a checkpoint after checking every key, type and shape (one line names what is wrong)."""
        checkpoint.check_state(state, self.cfg, {"generator": self.G, "discriminator": self.D}, self.ema)
        QualityState.parse(state.get("quality") or {})
        if self.ada:
            self.ada.check(state.get("ada"))
        self.G.load_state_dict(state["generator"])
        self.D.load_state_dict(state["discriminator"])
        load_checked(self.opt_g, state["opt_g"], "opt_g")
        load_checked(self.opt_d, state["opt_d"], "opt_d")
        if self.ema:
            self.ema.load_state_dict(state["ema"])
        if self.ada:
            self.ada.load_state_dict(state["ada"])
        if state.get("rng_device", "cpu") == self.device.type:
            checkpoint.set_rng_state(self.rng, state["rng"])
        else:  # a CPU generator's state does not fit a CUDA one: continue with a fresh, seeded stream
            self.rng.manual_seed(self.cfg.seed * 1_000_003 + int(state["step"]))
            self.say(f"resuming on {self.device.type} a run trained on {state['rng_device']}: "
                     "noise draws restart from a new seed, so losses will not match a straight run")
        if state.get("loss_g") is not None:
            self.gan_step.loss_g = state["loss_g"].to(self.device)
        self.fixed_noise = state["fixed_noise"]  # a checkpoint's grid keeps its size
        self.epoch, self.step = int(state["epoch"]), int(state["step"])
        self.saved_epoch = self.epoch
        if self.quality and (note := self.quality.load_state(state.get("quality"))):
            self.say(note)
        if self.cfg.kimg and self.step >= budget.budget_steps(self.cfg):
            raise GankitError(f"it already showed {self.step * self.cfg.batch_size / 1000:g} kimg of its "
                              f"kimg={self.cfg.kimg:g}: pass --set kimg=K with a larger K to train further")
        if self.cfg.kimg:  # the epochs the rest of the budget spans, after those done (the last may be partial)
            self.cfg = config.override(self.cfg, {"epochs": budget.epochs_for(self.cfg, len(self.batches),
                                                                              self.step, self.epoch)})
        if self.epoch >= self.cfg.epochs:
            raise GankitError(f"it already trained {self.epoch} of {self.cfg.epochs} epochs: "
                              f"pass --epochs N with N > {self.epoch} to train further")

    # ------------------------------------------------------------------ the loop
    def fit(self) -> RunResult:
        """Train from the current epoch to the last (or an early stop, or the time limit), then finish.
        A failed write (a full disk), of whichever file, is one line: the file, and what is intact; so is another
        process of a torchrun group that died or hangs."""
        with self.writes(), distributed.peers(self.world, self.on_disk):
            self._open_run_dir()
            self.G.train()
            self.D.train()
            self.budget = budget.Budget(self.cfg, len(self.batches), self.step, self.epoch)
            trained, stopped = 0, None
            try:
                with self.interrupts:
                    while self.epoch < self.cfg.epochs and not stopped:
                        if self.step > self.budget.first and self.out_of_time():  # an evaluation or a
                            # checkpoint ran past the limit: no new epoch (the first one always takes a step)
                            stopped = self.time_stop()
                            self.say(stopped)
                            break
                        steps, seconds, out_of_time = self.train_epoch()
                        trained += steps * self.cfg.batch_size
                        stopped = self.end_epoch(seconds, steps, out_of_time)
            finally:
                self.log.close()
            return self.finish(stopped, self.budget.elapsed(), trained)

    def out_of_time(self) -> bool:
        """Whether time_limit has passed: rank 0's clock decides for every rank."""
        return bool(self.cfg.time_limit) and distributed.shared(self.world, self.budget.out_of_time)

    def time_stop(self) -> str:
        return (f"time limit: stopped after {self.budget.elapsed():.0f} s (time_limit={self.cfg.time_limit:g}) in "
                f"epoch {self.epoch}, at step {self.step}")

    @property
    def scalar_names(self) -> tuple[str, ...]:
        """What train_step returns, by name: the four losses and scores, and ADA's r_t and p when it adapts."""
        return SCALARS + (ADA_SCALARS if self.ada else ())

    def _open_run_dir(self) -> None:
        """The run directory: created (or taken up again) only now that data, models and checkpoint are good."""
        cfg = self.cfg
        self.started = True
        if not self.world.main:  # rank 0 writes the run directory; the others only compute
            self.log = QuietLog(cfg.log_every, self.scalar_names)
            return
        for folder in (layout.SAMPLES, layout.TENSORBOARD):
            own_folder(self.run_dir / folder)  # never a link to another folder
        # metrics.jsonl first: a damaged one stops the resume before config.toml is rewritten
        self.log = TrainingLog(self.run_dir, cfg.log_every, layout.METRICS, layout.TENSORBOARD, self.scalar_names,
                               resume_step=self.step if self.resumed else None)
        (self.run_dir / layout.SAMPLES).mkdir(parents=True, exist_ok=True)
        config.save(cfg, self.run_dir / layout.CONFIG)
        self.fixed_noise = self.fixed_noise.to(self.device)
        self.fixed_labels = class_labels(len(self.fixed_noise), cfg.num_classes, self.device)
        self._write_reals()
        length = f"{cfg.kimg:g} kimg ({cfg.epochs} epochs)" if cfg.kimg else f"{cfg.epochs} epochs"
        what = (f"resuming at epoch {self.epoch + 1} of {length}" if self.resumed else f"training for {length}")
        self.say(f"{cfg.preset} ({cfg.model}, {cfg.loss}) on {cfg.data}: {len(self.data)} images "
                 f"{tuple(self.data.images.shape[1:])}, {self.device.type}, {what} -> {self.run_dir}")

    def _write_reals(self) -> None:
        """RUN_DIR/reals.png: real images in the layout of the sample grids (written once; TensorBoard too)."""
        if (self.run_dir / layout.REALS).is_file():
            return
        cfg = self.cfg
        grid = images_mod.grid(loading.grid_picks(self.data, len(self.fixed_noise), cfg.num_classes),
                               nrow=cfg.num_classes or None)
        atomic_write(self.run_dir / layout.REALS, lambda tmp: images_mod.save_grid(grid, tmp))
        self.log.reals(grid)  # TensorBoard: the grid at its own size

    def train_epoch(self) -> tuple[int, float, bool]:
        """One pass over the data, or what is left of the budget: (steps taken, seconds, whether the time limit
        cut it short; it is checked before every step)."""
        cfg = self.cfg
        bar = console.bar(min(len(self.batches), self.budget.last - self.step), f"epoch {self.epoch + 1}/{cfg.epochs}",
                          enabled=self.progress)
        epoch_start, steps, out_of_time = time.perf_counter(), 0, False
        for real, y in self.batches.epoch(self.epoch):  # y: the batch's labels (conditional runs), else None
            if self.budget.done(self.step):
                break  # a kimg budget spent part way through its last epoch
            if steps and self.out_of_time():
                out_of_time = True
                break
            scalars = self.train_step(real, y)
            self.check_health(self.log.step(self.epoch + 1, self.step, scalars))
            steps += 1
            bar.update(1)
            if line := self.budget.tick(self.step, self.evaluations_left()):
                self.say(line)
            if self.step % cfg.log_every == 0:
                bar.set_postfix({**self.log.postfix(), **self.budget.postfix(self.step)}, refresh=False)
                if distributed.any_rank(self.world, self.interrupts.requested, self.device):
                    raise distributed.AgreedStop  # a Ctrl-C on some rank: every rank stops after this same step
        self.check_health(self.log.flush())
        seconds = time.perf_counter() - epoch_start
        bar.set_postfix(self.log.postfix(**{"img/s": f"{steps * cfg.batch_size / max(seconds, 1e-9):.0f}"}))
        bar.close()
        return steps, seconds, out_of_time

    def train_step(self, real: torch.Tensor, y: torch.Tensor | None) -> torch.Tensor:
        """One step on a batch: D update (and a G update every n_critic steps), then the EMA.
        Returns (loss_D, loss_G, D(x), D(G(z))) as one float tensor, still on the device."""
        cfg = self.cfg
        g_step = (self.step + 1) % cfg.n_critic == 0  # n_critic D steps per G step
        r1 = bool(cfg.r1_gamma) and self.step % cfg.r1_every == 0  # lazy R1: every r1_every D steps
        z = self.rows.randn(cfg.z_dim, device=self.device, generator=self.rng)  # this rank's rows of the noise
        loss_d, loss_g, d_real, d_fake = self.gan_step(real, y, z, g_step, r1)
        if self.ema and g_step:
            self.ema.accumulate()  # ema <- decay * ema + (1 - decay) * G
        self.step += 1
        scalars = [loss_d, loss_g.detach(), d_real, d_fake]
        if self.ada:  # E[sign(D(x_real))] of this batch, for ADA's feedback
            scalars.append(self.gan_step.real_sign)
        # several processes: each computed its rows' means; their mean is the global batch's
        values = distributed.mean(self.world, torch.stack(scalars).float())
        if not self.ada:
            return values
        self.ada.observe(values[4])
        return torch.cat([values, self.ada.p.view(1).to(values)])  # + ADA's p after this step

    def check_health(self, rows: list[tuple[int, int, dict[str, float]]]) -> None:
        """The health checks on logged rows: each finding is reported; divergence stops training."""
        for epoch, step, values in rows:
            for finding in self.health.on_step(epoch, step, values):
                self.warn(finding)
                if finding.kind == "divergence":
                    raise Diverged(f"{finding.line()}; {self.on_disk()}")

    def on_disk(self, first: str = "") -> str:
        """What a stopped run leaves to continue from, in words (first: what to do before resuming)."""
        again = f"{first}gankit train --resume {self.run_dir}"
        if self.saved_epoch and self.saved_epoch >= self.cfg.epochs:  # stopped after the last checkpoint
            return f"training finished: the checkpoint of epoch {self.saved_epoch} is intact"
        if self.saved_epoch:
            return f"the checkpoint of epoch {self.saved_epoch} is intact ({again})"
        if (self.run_dir / layout.CONFIG).exists():
            return f"no checkpoint was written yet: {again} starts it again from epoch 1"
        return "nothing was written"

    @contextlib.contextmanager
    def writes(self):
        """The one rule for a write that fails while training (a full disk): a GankitError naming the file, the
        cause, and what is intact (rank 0's, in end_epoch, is every rank's)."""
        try:
            yield
        except OSError as exc:
            first = "free space, then " if exc.errno in (errno.ENOSPC, errno.EDQUOT) else "fix that, then "
            raise GankitError(f"cannot write {exc.filename or f'into {self.run_dir}'} ({exc.strerror or exc}); "
                              f"{self.on_disk(first)}") from None

    def warn(self, finding: Finding) -> None:
        """A health finding: a warning line, and a record in metrics.jsonl and TensorBoard (rank 0)."""
        line = f"gankit: warning: {finding.line()}"
        if self.progress:
            console.warn(finding.line())
        if self.world.main:
            self.log.health(finding, line, REMEDIES[finding.kind])
