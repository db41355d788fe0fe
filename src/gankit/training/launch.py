"""Start and resume runs: `train()` and `resume()`, the library functions behind `gankit train`.

Each claims its run directory (gankit.run.lock: one writer at a time), builds a `gankit.training.trainer.Trainer`,
restores the checkpoint when resuming, and trains.
"""

from __future__ import annotations

import contextlib
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

import torch.distributed as dist

from gankit import config as config_mod
from gankit import console, devices
from gankit.config import Config
from gankit.data import loading
from gankit.devices import resolve_device
from gankit.errors import GankitError
from gankit.run import checkpoint, generator_file, layout
from gankit.run import lock as rundir
from gankit.training import distributed
from gankit.training.losses import LOSSES
from gankit.training.result import RunResult
from gankit.training.trainer import Trainer

__all__ = ["train", "resume", "resolve_device", "default_run_dir", "Trainer", "RunResult", "LOSSES"]


def default_run_dir(cfg: Config) -> Path:
    source = cfg.data.split(":", 1)[0]
    return Path("runs") / f"{cfg.preset}-{source}-{datetime.now():%Y%m%d-%H%M%S}"


def train(cfg: Config | str | None = None, run_dir: str | Path | None = None, resume: bool = False,
          progress: bool = True, **settings: Any) -> RunResult:
    """Train a new run into run_dir, or continue it with resume=True; what `gankit train` does.

    Args:
        cfg: a preset name ("dcgan", "simple-gan"), a Config (gankit.config.resolve), or None: the dcgan preset.
        run_dir: the run directory to create (it must not exist yet, or be empty); None: runs/PRESET-SOURCE-TIME
            (-2, -3, ... added when a run started in the same second took that name).
        resume: continue run_dir from its checkpoint (gankit.resume is the usual way to ask for it).
        progress: a progress bar and notes on stderr.
        **settings: config values over the preset or cfg, as `--set key=value` gives them: epochs=5,
            data="folder:faces", image_size=64, subset=1000, eval_every=0, device="cpu", ...
    Returns:
        a RunResult: run_dir, epochs, steps, seconds, images_per_s, the last losses (last), best_fd and
        best_epoch (when evaluated), health findings; .summary() is what the command prints.
    Raises:
        GankitError on a bad setting, an existing run_dir, bad data, or a diverged run (which names the intact
        checkpoint).

    The run directory is claimed first (gankit.run.lock: one writer at a time). A resumed run continues from its
    checkpoint, or from epoch 1 with its config.toml when it was stopped before its first checkpoint.
    Under torchrun every process calls this alike: the process group is started here (and ended on every
    exit), rank 0 claims and writes the run directory, and every rank trains its share of each batch.
    """
    notes: list[str] = []
    cfg = _config(cfg, settings, notes)
    world = devices.from_env()
    console.quiet_unless_main(world.main)  # under torchrun, rank 0 alone speaks
    for line in notes if progress else ():
        console.say(line)
    owns_group = world.several and not dist.is_initialized()
    device = distributed.start(world, resolve_device(cfg.device), cfg.group_timeout)
    try:
        numbered = run_dir is None  # the default name: a run started in the same second may hold it
        # one name for the run, rank 0's (the default one has the time in it)
        run_dir = Path(distributed.shared(world, lambda: str(run_dir or default_run_dir(cfg))))
        return _claimed(cfg, run_dir, resume, progress, world, device, numbered)
    except distributed.AgreedStop:
        distributed.settle(world)  # rank 0 has closed its files before any rank exits
        raise
    finally:
        if owns_group:
            distributed.stop()


def _config(cfg: Config | str | None, settings: dict[str, Any], notes: list[str]) -> Config:
    if isinstance(cfg, Config):
        return config_mod.override(cfg, settings) if settings else cfg
    if cfg is not None and not isinstance(cfg, str):
        raise GankitError(f"train() takes a preset name or a Config, not a {type(cfg).__name__}")
    if cfg is not None and "preset" in settings:
        raise GankitError("give the preset once: as the first argument or as preset=, not both")
    return config_mod.resolve(cfg or settings.pop("preset", None), sets=settings, notes=notes)


def _claimed(cfg: Config, run_dir: Path, resume: bool, progress: bool, world: devices.World,
             device, numbered: bool = False) -> RunResult:
    held: list[rundir.RunLock] = []

    def claim() -> str:
        lock = rundir.claim(run_dir, resume, numbered)
        if not resume:  # resumable from the first moment: a run killed while it starts resumes from epoch 1
            try:
                config_mod.save(cfg, lock.run_dir / layout.CONFIG)
            except BaseException:  # a failed first write leaves no half-made run folder
                lock.discard((layout.CONFIG,))
                lock.release()
                raise
        held.append(lock)
        return str(lock.run_dir)  # a default name taken by another run got a suffix

    run_dir = Path(distributed.shared(world, claim))  # on rank 0; its refusal is every rank's
    trainer = None
    with held[0] if held else contextlib.nullcontext() as lock:
        try:
            trainer = _prepare(cfg, run_dir, resume, progress, world, device)
            return trainer.fit()
        except BaseException as exc:
            if lock and not resume and (trainer is None or not trainer.started):
                lock.discard((layout.CONFIG,))  # a new run that failed before training leaves nothing behind
            if isinstance(exc, KeyboardInterrupt):  # say what a stopped run leaves (the CLI prints it)
                raise type(exc)(trainer.on_disk() if trainer and trainer.started else
                                "before training started: nothing was changed") from None
            raise


def _prepare(cfg: Config, run_dir: Path, resume: bool, progress: bool, world: devices.World,
             device) -> Trainer:
    """A Trainer for a new run, or for a resumed one with its checkpoint restored (when it has one)."""
    state = None
    if resume and (run_dir / layout.CHECKPOINT).exists():
        state = checkpoint.load_checkpoint(run_dir)
    elif resume and (_trained_past_epoch_1(run_dir) or (run_dir / layout.CHECKPOINT).is_symlink()):
        # a checkpoint existed (an export of epoch 2 or later) or is a broken link: starting over would
        # replace work. (An export of epoch 1 alone is a run stopped between that export and its checkpoint.)
        raise GankitError(f"{run_dir} has trained ({layout.GENERATOR} is there) but its {layout.CHECKPOINT} is missing"
                          " or unreadable: put it back, or start a new run (nothing was changed)")
    trainer = Trainer(cfg, run_dir, progress, device=device, world=world)
    trainer.resumed = resume
    if state is not None:
        # a source replaced since the checkpoint would continue silently on other pictures
        changed = loading.same_data(state.get("data"), trainer.data, cfg.data_changed_ok, str(run_dir))
        if changed and world.main:
            console.note(changed)
        try:
            trainer.load_state_dict(state)
        except GankitError as exc:
            raise GankitError(f"checkpoint {run_dir / layout.CHECKPOINT} cannot be resumed: {exc}") from None
    elif resume and world.main:  # said even without a progress bar: the run starts over
        console.note(f"{run_dir} has no checkpoint yet (it was stopped during its first epoch): training it from "
                     "epoch 1 with its config.toml")
    return trainer


def _trained_past_epoch_1(run_dir: Path) -> bool:
    if not (run_dir / layout.GENERATOR).exists():
        return False
    epoch = generator_file.export_info(run_dir).get("epoch")
    return not isinstance(epoch, int) or epoch > 1


def resume(run_dir: str | Path, changes: dict[str, Any] | None = None, progress: bool = True,
           **settings: Any) -> RunResult:
    """Continue a run from its checkpoint; what `gankit train --resume RUN_DIR` does.

    Args:
        run_dir: the run directory to continue (its config.toml decides everything else).
        changes, **settings: values to change, epochs=60 above all; only epochs and machinery settings may
            change (gankit.config.RESUMABLE_KEYS).
        progress: a progress bar and notes on stderr.
    Returns:
        a RunResult, as train() returns.
    Raises:
        GankitError when run_dir is no run, its checkpoint does not fit its config, or a change is not allowed.
    """
    if changes is not None and not isinstance(changes, Mapping):  # checked as the CLI's --set is
        raise GankitError(f"changes must be a mapping of config keys to values, e.g. {{'epochs': 60}}, got "
                          f"{type(changes).__name__}")
    cfg = generator_file.load_run_config(run_dir)
    changes = {**(changes or {}), **settings}
    if "epochs" in changes and "kimg" not in changes and cfg.kimg:
        changes["kimg"] = 0.0  # the length named wins over the run's kimg budget
    bad = sorted(set(changes) - config_mod.RESUMABLE_KEYS)
    if bad:
        raise GankitError(f"cannot change {', '.join(bad)} when resuming (only "
                          f"{', '.join(sorted(config_mod.RESUMABLE_KEYS))}): start a new run instead")
    return train(config_mod.override(cfg, changes), run_dir, resume=True, progress=progress)
