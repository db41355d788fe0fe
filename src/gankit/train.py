"""The training loop, readable top to bottom: data -> models -> (D step, G step) per batch -> run directory."""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from . import checkpoint as ckpt
from . import config as config_mod
from . import data as data_mod
from . import images as images_mod
from .config import Config
from .errors import GankitError
from .diffaug import diff_augment, parse_policy
from .ema import EMA
from .fused import FusedMLPStep
from .fused import supported as fused_supported
from .losses import LOSSES, gradient_penalty, r1_penalty
from .models import build, class_labels, eval_mode, run
from .monitor import REMEDIES, Health, Quality

SCALARS = ("loss_D", "loss_G", "D(x)", "D(G(z))")


@dataclass
class RunResult:
    run_dir: Path
    epochs: int
    steps: int
    seconds: float
    images_per_s: float
    last: dict[str, float]
    stopped: str | None = None  # why training ended before the last epoch
    best_fd: float | None = None
    best_epoch: int = 0
    health: list[str] = field(default_factory=list)

    def summary(self) -> str:
        last = ", ".join(f"{k} {v:.3f}" for k, v in self.last.items())
        lines = [f"trained {self.epochs} epochs ({self.steps} steps) in {self.seconds:.1f} s, "
                 f"{self.images_per_s:.0f} images/s; last: {last}; run: {self.run_dir}"]
        if self.stopped:
            lines.append(self.stopped)
        if self.best_fd is not None:
            lines.append(f"best FD {self.best_fd:.3f} at epoch {self.best_epoch}: {self.run_dir / ckpt.BEST}")
        lines += [f"health: {h}" for h in self.health] or ["health: no problems found"]
        return "\n".join(lines)


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise GankitError(f"device '{name}' requested but CUDA is not available here: use --device cpu or auto")
    return torch.device(name)


def default_run_dir(cfg: Config) -> Path:
    source = cfg.data.split(":", 1)[0]
    return Path("runs") / f"{cfg.preset}-{source}-{datetime.now():%Y%m%d-%H%M%S}"


def train(cfg: Config, run_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True) -> RunResult:
    """Train a new run into run_dir (which must not exist yet), or continue it with resume=True."""
    run_dir = Path(run_dir) if run_dir is not None else default_run_dir(cfg)
    cfg = config_mod.override(cfg, {"conditional": cfg.conditional})  # a Config made in code may hold a bool
    state = ckpt.load_checkpoint(run_dir) if resume else None
    if not resume and run_dir.exists() and any(run_dir.iterdir()):
        raise GankitError(f"run directory {run_dir} already exists: continue it with --resume {run_dir} "
                          "or choose another --out")
    device = resolve_device(cfg.device)
    loss = LOSSES[cfg.loss]

    # Data: decoded once into a uint8 tensor on the training device.
    data = data_mod.load(cfg.data, cfg.data_dir or None, cfg.image_size, cfg.channels, cfg.subset)
    labeled = data.labels is not None and len(data.classes or ()) >= 2
    if cfg.conditional == "true" and not labeled:
        raise GankitError(f"conditional=true needs a labeled source (2 or more classes), and {cfg.data} has "
                          "none (use class subfolders for a folder source)")
    if not resume:  # write down what "auto" became, so config.toml describes the run exactly
        conditional = cfg.conditional == "true" or (cfg.conditional == "auto" and labeled)
        cfg = config_mod.override(cfg, {
            "conditional": conditional, "num_classes": len(data.classes) if conditional else 0,
            "channels": data.images.shape[1], "n_critic": cfg.n_critic or loss.n_critic,
            "d_norm": loss.d_norm if cfg.d_norm == "auto" else cfg.d_norm})
    images = data.images.to(device)
    labels = data.labels.to(device) if cfg.num_classes else None

    # Models and optimizers.
    torch.manual_seed(cfg.seed)
    G, D = build(cfg.model, cfg.z_dim, cfg.channels, cfg.image_size, cfg.num_classes, cfg.d_norm, cfg.spectral_norm,
                 cfg.g_width, cfg.d_width, config_mod.d_widths(cfg))
    fmt = torch.channels_last if cfg.channels_last and cfg.model != "mlp" else torch.contiguous_format
    G, D = G.to(device, memory_format=fmt), D.to(device, memory_format=fmt)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d or cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=True)
    ema = EMA(G, cfg.ema) if cfg.ema else None
    sampler = ema.model if ema else G  # the generator that grids, evaluations and exports use
    # Without BatchNorm, D on [real; fake] in one call is the same function as two calls, and cheaper.
    joint_d = not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in D.modules())
    rng = torch.Generator(device).manual_seed(cfg.seed)  # noise, augmentation and penalty draws
    # the fixed-noise grid: sample_count images, rounded up to whole rows of one column per class
    k = cfg.num_classes
    count = -(-cfg.sample_count // k) * k if 0 < k <= cfg.sample_count else cfg.sample_count
    fixed_noise = torch.randn(count, cfg.z_dim, generator=torch.Generator().manual_seed(cfg.seed))
    epoch = step = 0
    loss_g = torch.zeros((), device=device)  # G's last loss, logged on the D-only steps in between (n_critic > 1)
    if state is not None:
        G.load_state_dict(state["generator"])
        D.load_state_dict(state["discriminator"])
        opt_g.load_state_dict(state["opt_g"])
        opt_d.load_state_dict(state["opt_d"])
        if ema:
            ema.load_state_dict(state["ema"])
        if state.get("rng_device", "cpu") == device.type:
            rng.set_state(state["rng"].cpu())
        else:  # a CPU generator's state does not fit a CUDA one: continue with a fresh, seeded stream
            rng.manual_seed(cfg.seed * 1_000_003 + int(state["step"]))
            if progress:
                print(f"gankit: resuming on {device.type} a run trained on {state.get('rng_device', 'cpu')}: "
                      "noise draws restart from a new seed, so losses will not match a straight run",
                      file=sys.stderr)
        if state.get("loss_g") is not None:
            loss_g = state["loss_g"].to(device)
        fixed_noise, epoch, step = state["fixed_noise"], int(state["epoch"]), int(state["step"])
        if epoch >= cfg.epochs:
            raise GankitError(f"{run_dir} already trained {epoch} of {cfg.epochs} epochs: "
                              f"pass --epochs N with N > {epoch} to train further")
    fixed_noise = fixed_noise.to(device)
    fixed_labels = class_labels(len(fixed_noise), cfg.num_classes, device)  # a checkpoint's grid keeps its size
    g_run, d_run = (torch.compile(G), torch.compile(D)) if cfg.compile else (G, D)
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if cfg.amp and device.type == "cuda"
                else contextlib.nullcontext())
    policy = parse_policy(cfg.diffaug)

    def augment(x: torch.Tensor) -> torch.Tensor:  # DiffAugment: the same kind of draw for real and fake
        return diff_augment(x, policy, rng) if policy else x

    batches = data_mod.Batches(images, cfg.batch_size, cfg.seed, cfg.rotation, cfg.hflip, rng, fmt, labels)
    quality = None
    if cfg.eval_every and (data.labels is not None or cfg.evaluator):
        quality = Quality.for_data(data, cfg.evaluator, cfg.eval_samples, cfg.early_stop, progress)
        note = quality.load_state(state.get("quality") if state else None)
        if note and progress:
            print(f"gankit: {note}", file=sys.stderr)
    elif cfg.eval_every and progress:
        print(f"gankit: {cfg.data} has no labels to train an evaluator on: quality metrics are off "
              "(set evaluator=PATH to use one)", file=sys.stderr)

    # The run directory: created only now that data and models are known to be good.
    (run_dir / ckpt.SAMPLES).mkdir(parents=True, exist_ok=True)
    config_mod.save(cfg, run_dir / ckpt.CONFIG)
    log = MetricsLog(run_dir, cfg.log_every, purge_after=step)

    def report(finding):
        line = f"gankit: warning: {finding.line()}"
        if progress:
            tqdm.write(line, file=sys.stderr)
        log.writer.add_text("health", line, finding.step)
        log.record({"kind": "health", "issue": finding.kind, "epoch": finding.epoch, "step": finding.step,
                    "message": finding.message, "remedy": REMEDIES[finding.kind]})

    health = Health(report, judge_d=loss.probability)
    log.watch = health.on_step
    if progress:
        what = f"resuming at epoch {epoch + 1} of {cfg.epochs}" if resume else f"training for {cfg.epochs} epochs"
        print(f"gankit: {cfg.preset} ({cfg.model}, {cfg.loss}) on {cfg.data}: {len(data)} images "
              f"{tuple(data.images.shape[1:])}, {device.type}, {what} -> {run_dir}", file=sys.stderr)

    class_counts = data.class_counts()  # labels of the EMA's BatchNorm recalibration follow the data's mix

    def prepare_sampler(at_step: int) -> None:
        """EMA generator: BatchNorm statistics for the averaged weights, from noise seeded by the step."""
        if ema:
            g = torch.Generator(device).manual_seed(cfg.seed * 7919 + at_step)
            ema.recalibrate(lambda n: (torch.randn(n, cfg.z_dim, device=device, generator=g),
                                       class_labels(n, cfg.num_classes, device, prior=class_counts)))

    def autograd_step(real, y, z, g_step: bool, loss_g):
        """One D step (and, every n_critic steps, one G step) through autograd; (loss_D, loss_G, D(x), D(G(z)))."""
        with autocast:
            # fakes are drawn for the batch's own labels, so they follow the data's class mix
            with contextlib.nullcontext() if g_step else torch.no_grad():
                fake = run(g_run, z, y)
            # update D: real up, fake down (the fake batch is detached from G)
            real_in, fake_in = augment(real), augment(fake.detach())
            if joint_d:
                both = None if y is None else torch.cat([y, y])
                real_logits, fake_logits = run(d_run, torch.cat([real_in, fake_in]), both).split(B)
            else:
                real_logits, fake_logits = run(d_run, real_in, y), run(d_run, fake_in, y)
            loss_d = loss.d(real_logits, fake_logits, cfg.label_smoothing)
        # penalties: in fp32 (outside autocast) and through the uncompiled D, since they need a double
        # backward, which torch.compile does not support
        if loss.gradient_penalty:
            loss_d = loss_d + cfg.gp_lambda * gradient_penalty(lambda x: run(D, x, y), real_in.float(),
                                                               fake_in.float(), rng)
        if r1_scale and step % cfg.r1_every == 0:  # lazy R1, scaled by its interval
            loss_d = loss_d + r1_scale * r1_penalty(lambda x: run(D, x, y), real_in.float())
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()

        if g_step:
            # update G: raise D's score of the same fake batch; D's weights need no gradient
            D.requires_grad_(False)
            with autocast:
                loss_g = loss.g(run(d_run, augment(fake), y))
            opt_g.zero_grad(set_to_none=True)
            loss_g.backward()
            opt_g.step()
            D.requires_grad_(True)
        return (loss_d, loss_g, loss.score(real_logits.detach().float()).mean(),
                loss.score(fake_logits.detach().float()).mean())

    G.train()
    D.train()
    B, start, trained_images, stopped = cfg.batch_size, time.perf_counter(), 0, None
    r1_scale = cfg.r1_gamma / 2 * cfg.r1_every
    fused_step = FusedMLPStep(G, D, opt_g, opt_d, cfg.label_smoothing) if fused_supported(cfg) else None
    try:
        for epoch in range(epoch, cfg.epochs):
            bar = tqdm(total=len(batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch",
                       disable=not progress, leave=True, dynamic_ncols=True)
            epoch_start, epoch_steps, out_of_time = time.perf_counter(), 0, False
            for real, y in batches.epoch(epoch):  # y: the batch's labels (conditional runs), else None
                g_step = (step + 1) % cfg.n_critic == 0  # n_critic D steps per G step
                z = torch.randn(B, cfg.z_dim, device=device, generator=rng)
                if fused_step is not None:  # mlp + bce: the hand-written step (gankit.fused)
                    loss_d, loss_g, d_real, d_fake = fused_step.step(real, z)
                else:
                    loss_d, loss_g, d_real, d_fake = autograd_step(real, y, z, g_step, loss_g)
                if ema and g_step:
                    ema.update()
                step += 1
                epoch_steps += 1
                log.step(epoch + 1, step, torch.stack([loss_d.detach(), loss_g.detach(), d_real, d_fake]).float())
                bar.update(1)
                if step % cfg.log_every == 0:
                    bar.set_postfix(log.latest_postfix(), refresh=False)
                    if cfg.time_limit and time.perf_counter() - start > cfg.time_limit:
                        out_of_time = True
                        break
            log.flush()
            seconds = time.perf_counter() - epoch_start
            trained_images += epoch_steps * B
            speed = epoch_steps * B / max(seconds, 1e-9)
            bar.set_postfix({**log.latest_postfix(), "img/s": f"{speed:.0f}"})
            bar.close()

            # end of epoch: fixed-noise grid, generator export, then the checkpoint (last, atomically)
            prepare_sampler(step)
            grid = sample_grid(sampler, fixed_noise, fixed_labels, nrow=cfg.num_classes or None)
            images_mod.save_png(grid, run_dir / ckpt.SAMPLES / f"epoch_{epoch + 1:03d}.png")
            log.writer.add_image("samples", grid, step)
            log.record({"kind": "epoch", "epoch": epoch + 1, "step": step, "seconds": round(seconds, 3),
                        "images_per_s": round(speed, 1)})
            ckpt.export_generator(sampler, cfg, run_dir, epoch=epoch + 1, step=step, classes=data.classes)
            stopped = None
            if quality and ((epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs or out_of_time):
                best_covered = quality.state.best_covered
                values = quality.measure(sampler, cfg.z_dim, cfg.seed, device, cfg.num_classes)
                improved, stopped = quality.update(values, epoch + 1)
                log.evaluation(epoch + 1, step, values, quality.floor, quality.n, quality.fingerprint[:12])
                health.on_eval(epoch + 1, step, values, quality.reference.num_classes, best_covered,
                               quality.state.evaluations)
                if improved:
                    ckpt.export_generator(sampler, cfg, run_dir, name=ckpt.BEST, epoch=epoch + 1, step=step,
                                          classes=data.classes)
            if out_of_time:
                stopped = (f"time limit: stopped after {time.perf_counter() - start:.0f} s "
                           f"(time_limit={cfg.time_limit:g}) in epoch {epoch + 1}, at step {step}")
            ckpt.save_checkpoint({
                "generator": G.state_dict(), "discriminator": D.state_dict(),
                "opt_g": opt_g.state_dict(), "opt_d": opt_d.state_dict(),
                "ema": ema.state_dict() if ema else {}, "loss_g": loss_g.detach().float().cpu(),
                "epoch": epoch + 1, "step": step, "rng": rng.get_state(), "rng_device": device.type,
                "fixed_noise": fixed_noise.cpu(), "config": cfg.to_dict(),
                "quality": quality.state_dict() if quality else {},
            }, run_dir)
            if stopped:
                if progress:
                    tqdm.write(f"gankit: {stopped}", file=sys.stderr)
                break
    finally:
        log.close()

    from .plots import plot_loss_curves
    plot_loss_curves(run_dir / ckpt.METRICS, run_dir / "loss_curves.png", probability=loss.probability)
    write_progress_gif(run_dir)
    seconds = time.perf_counter() - start
    best = quality.state if quality else None
    return RunResult(run_dir, epoch + 1, step, seconds, trained_images / max(seconds, 1e-9), log.last, stopped,
                     best.best_fd if best else None, best.best_epoch if best else 0,
                     [f.line() for f in health.findings])


def write_progress_gif(run_dir: Path) -> Path | None:
    """RUN_DIR/progress.gif: the per-epoch fixed-noise grids as an animation (the last one held longer)."""
    paths = sorted((run_dir / ckpt.SAMPLES).glob("epoch_*.png"))
    if not paths:
        return None
    frames = [images_mod.read_png(p) for p in paths]
    frames += [frames[-1]] * 4
    out = run_dir / "progress.gif"
    ckpt.atomic_write(out, lambda tmp: images_mod.save_gif(frames, tmp, ms_per_frame=300))
    return out


def resume(run_dir: str | Path, changes: dict[str, Any] | None = None, progress: bool = True) -> RunResult:
    """Continue a run from its checkpoint; only epochs and machinery settings may change."""
    cfg = ckpt.load_run_config(run_dir)
    changes = changes or {}
    bad = sorted(set(changes) - config_mod.RESUMABLE_KEYS)
    if bad:
        raise GankitError(f"cannot change {', '.join(bad)} when resuming (only "
                          f"{', '.join(sorted(config_mod.RESUMABLE_KEYS))}): start a new run instead")
    return train(config_mod.override(cfg, changes), run_dir, resume=True, progress=progress)


@torch.no_grad()
def sample_grid(generator: torch.nn.Module, noise: torch.Tensor, labels: torch.Tensor | None = None,
                nrow: int | None = None) -> torch.Tensor:
    """Generate from `noise` (and labels) in eval mode and tile into one uint8 grid (C x H x W)."""
    with eval_mode(generator):
        images = run(generator, noise, labels)
    return images_mod.grid(data_mod.to_uint8(images), nrow)


class MetricsLog:
    """Per-step scalars to TensorBoard and metrics.jsonl, synced from the device every `every` steps."""

    def __init__(self, run_dir: Path, every: int, purge_after: int = 0):
        from torch.utils.tensorboard import SummaryWriter

        self.path = run_dir / ckpt.METRICS
        if purge_after and self.path.exists():
            # a resumed run drops what was logged after its checkpoint, so every step appears once
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= purge_after]
            ckpt.atomic_write(self.path, lambda tmp: Path(tmp).write_text("".join(k + "\n" for k in kept)))
        self.file = self.path.open("a")
        self.writer = SummaryWriter(str(run_dir / ckpt.TENSORBOARD), purge_step=purge_after + 1 if purge_after else None)
        self.every, self.pending, self.last = every, [], {}
        self.watch = None  # called with (epoch, step, values) for every row; may raise to stop training

    def step(self, epoch: int, step: int, values: torch.Tensor) -> None:
        self.pending.append((epoch, step, values))
        if len(self.pending) >= self.every:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        rows = torch.stack([v for _, _, v in self.pending]).tolist()  # one device sync per flush
        for (epoch, step, _), row in zip(self.pending, rows):
            values = dict(zip(SCALARS, row))
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.file.write(json.dumps({"kind": "train", "epoch": epoch, "step": step,
                                        **{k: round(v, 6) for k, v in values.items()}}) + "\n")
            self.last = values
            if self.watch is not None:
                try:
                    self.watch(epoch, step, values)
                except BaseException:
                    self.pending.clear()
                    self.file.flush()
                    raise
        self.pending.clear()
        self.file.flush()

    def evaluation(self, epoch: int, step: int, values: dict, floor: dict | None, n: int,
                   evaluator: str = "") -> None:
        """One evaluation: TensorBoard scalars under eval/ (and floor/), a metrics.jsonl record that names
        the evaluator (a fingerprint prefix: values under different ones do not compare)."""
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{key}", value, step)
                if floor and key in floor:
                    self.writer.add_scalar(f"floor/{key}", floor[key], step)
        self.record({"kind": "eval", "source": "train", "epoch": epoch, "step": step, "n": n, **values,
                     "floor": floor, "evaluator": evaluator})

    def latest_postfix(self) -> dict[str, str]:
        return {k: f"{v:.3f}" for k, v in self.last.items()}

    def record(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def close(self) -> None:
        self.flush()
        self.file.close()
        self.writer.close()
