"""The run directory on disk: atomic checkpoints, safe loading, the self-describing generator export.

RUN_DIR/
  config.toml              the resolved config: all that generate/evaluate/report need to rebuild the models
  checkpoint.pt            both models, both optimizers, epoch/step, RNG states, fixed noise (torch.save)
  generator.safetensors    generator weights for inference; the model config rides in its metadata
  metrics.jsonl            one JSON object per logged step / epoch
  samples/epoch_NNN.png    fixed-noise grids;  tb/  TensorBoard events;  loss_curves.png
"""

from __future__ import annotations

import json
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from . import config as config_mod
from .adam import STATE_KEYS as ADAM_STATE
from .errors import GankitError
from .files import atomic_write
from .models import build_generator

CONFIG = "config.toml"
CHECKPOINT = "checkpoint.pt"
GENERATOR = "generator.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
TENSORBOARD = "tb"


def save_checkpoint(state: dict[str, Any], run_dir: str | Path) -> None:
    atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load RUN_DIR/checkpoint.pt without executing pickled code (weights_only=True)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise GankitError(f"no checkpoint in {run_dir} (expected {path}): is this a gankit run directory?")
    try:
        with warnings.catch_warnings():  # torch warns about legacy (non-zip) files: the one line below says it
            warnings.simplefilter("ignore")
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise GankitError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); "
                          "it cannot be resumed") from None
    if not isinstance(state, dict):
        raise GankitError(f"checkpoint {path} holds a {type(state).__name__}, not a gankit checkpoint")
    missing = {"generator", "discriminator", "opt_g", "opt_d", "epoch", "step"} - set(state)
    if missing:
        raise GankitError(f"checkpoint {path} lacks {', '.join(sorted(missing))}: not a gankit checkpoint")
    return state


# What a checkpoint holds (gankit.train.Trainer.state_dict writes exactly these) and the type of each value.
MAX_EPOCH, MAX_STEP = 10**7, 2**53
MAX_GRID_NOISE = 1024  # config's largest sample_count; a conditional grid rounds it up by less than a row
STATE_KEYS: dict[str, type] = {"generator": dict, "discriminator": dict, "opt_g": dict, "opt_d": dict,
                               "epoch": int, "step": int, "rng": torch.Tensor, "fixed_noise": torch.Tensor}
# Written by every gankit since they were added; older checkpoints resume without them.
OPTIONAL_KEYS: dict[str, type] = {"ema": dict, "loss_g": torch.Tensor, "rng_device": str, "quality": dict,
                                  "config": dict}


def check_state(state: dict[str, Any], cfg: config_mod.Config, models: dict[str, torch.nn.Module],
                ema=None) -> None:
    """Check a loaded checkpoint against this run before anything is restored: every key present with its
    type, every weight with its shape, the EMA generator when the run keeps one, the fixed noise's size.
    Raises GankitError naming the first thing wrong."""
    for key in STATE_KEYS:
        if key not in state:
            raise GankitError(f"it lacks '{key}'")
    for key, kind in {**STATE_KEYS, **OPTIONAL_KEYS}.items():
        value = state.get(key)
        if value is not None and (not isinstance(value, kind) or (kind is int and isinstance(value, bool))):
            raise GankitError(f"its '{key}' is a {type(value).__name__} where a {kind.__name__} belongs")
    if not (0 <= state["epoch"] <= MAX_EPOCH and 0 <= state["step"] <= MAX_STEP):
        raise GankitError(f"its epoch ({state['epoch']}) and step ({state['step']}) must be in [0, {MAX_EPOCH}] "
                          f"and [0, 2**53]")
    for name, module in models.items():
        check_weights(name, state[name], module)
    if ema is not None:
        saved = state.get("ema") or {}
        if not isinstance(saved.get("model"), dict) or not isinstance(saved.get("updates"), int):
            raise GankitError(f"this run keeps an EMA generator (ema={cfg.ema}) and the checkpoint holds none")
        check_weights("EMA generator", saved["model"], ema.model)
    noise = state["fixed_noise"]
    if (noise.dim() != 2 or not 1 <= noise.shape[0] <= MAX_GRID_NOISE + cfg.num_classes
            or noise.shape[1] != cfg.z_dim or not noise.is_floating_point()):
        raise GankitError(f"its fixed noise is a {noise.dtype} tensor of shape {tuple(noise.shape)}, not N x "
                          f"{cfg.z_dim} floats (z_dim {cfg.z_dim})")
    loss_g = state.get("loss_g")
    if loss_g is not None and loss_g.numel() != 1:
        raise GankitError(f"its loss_g holds {loss_g.numel()} values, not one")
    if state.get("rng_device", "cpu") not in ("cpu", "cuda"):
        raise GankitError(f"its rng_device is {state['rng_device']!r}, not cpu or cuda")


def check_weights(name: str, saved: dict[str, Any], module: torch.nn.Module) -> None:
    """saved must hold a tensor of the right shape for every entry of module.state_dict(), and nothing else."""
    expected = module.state_dict()
    missing = [k for k in expected if k not in saved]
    unexpected = [k for k in saved if k not in expected]
    if missing or unexpected:
        which = f"lacks '{missing[0]}'" if missing else f"has '{unexpected[0]}', which this run's model has not"
        raise GankitError(f"its {name} is another model: it {which} ({len(missing)} missing, "
                          f"{len(unexpected)} unexpected entries)")
    for key, value in saved.items():
        if not isinstance(value, torch.Tensor):
            raise GankitError(f"its {name} entry '{key}' is a {type(value).__name__}, not a tensor")
        if value.shape != expected[key].shape:
            raise GankitError(f"its {name} entry '{key}' has shape {tuple(value.shape)} where this run's model "
                              f"has {tuple(expected[key].shape)}: a checkpoint of another model")


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict[str, Any], name: str) -> None:
    """The checkpoint's Adam state (step counts and moment estimates, each checked against its parameter) into
    optimizer. Its hyperparameters stay the optimizer's own, which come from the run's config."""
    groups = saved.get("param_groups")
    if not isinstance(saved.get("state"), dict) or not isinstance(groups, list) or not all(
            isinstance(g, dict) and isinstance(g.get("params"), list) for g in groups):
        raise GankitError(f"its {name} is not an optimizer's state (state and param_groups)")
    sizes, own = [len(g["params"]) for g in groups], [len(g["params"]) for g in optimizer.param_groups]
    if sizes != own:
        raise GankitError(f"its {name} does not fit this run's optimizer (parameter groups of {sizes} "
                          f"parameters, this model's: {own})")
    settings = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        optimizer.load_state_dict({"state": saved["state"],
                                   "param_groups": [{**g, **s} for g, s in zip(groups, settings)]})
    except (ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError) as exc:
        raise GankitError(f"its {name} does not fit this run's optimizer ({str(exc).splitlines()[0]})") from None
    for group in optimizer.param_groups:
        for param in group["params"]:
            _check_adam_state(optimizer.state.get(param, {}), param, name)


def _check_adam_state(state: dict[str, Any], param: torch.Tensor, name: str) -> None:
    """One parameter's Adam state: nothing (it starts afresh), or exactly a step count and two moments, each
    a dense float tensor of the right shape holding finite values that Adam could have produced."""
    if not state:
        return
    of = f"for a parameter of shape {tuple(param.shape)}"
    if set(state) != set(ADAM_STATE):
        raise GankitError(f"its {name} holds {sorted(map(str, state))} {of}: not Adam's state (step, exp_avg, "
                          "exp_avg_sq)")
    for key, value in state.items():
        shape = () if key == "step" else param.shape
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided or not value.is_floating_point() \
                or value.shape != shape:
            what = f"{type(value).__name__} {tuple(getattr(value, 'shape', ()))}"
            raise GankitError(f"its {name} holds '{key}' ({what}) {of}: not Adam's state of this model")
        if not torch.isfinite(value).all() or (key != "exp_avg" and bool((value < 0).any())):
            raise GankitError(f"its {name} holds '{key}' {of} with values Adam never produces (negative, "
                              "infinite or NaN)")


def set_rng_state(rng: torch.Generator, state: torch.Tensor) -> None:
    try:
        rng.set_state(state.cpu())
    except (RuntimeError, TypeError) as exc:
        raise GankitError(f"its rng is not a random generator state ({str(exc).splitlines()[0]})") from None


def export_generator(generator: torch.nn.Module, cfg: config_mod.Config, run_dir: str | Path,
                     name: str = GENERATOR, epoch: int = 0, step: int = 0, classes: list[str] | None = None) -> None:
    """Write the generator's weights as safetensors with the model config, epoch/step and (for a conditional
    generator) the class names in the metadata."""
    tensors = {k: v.detach().cpu().contiguous() for k, v in generator.state_dict().items()}
    info = {**model_spec(cfg), "epoch": epoch, "step": step}
    if cfg.num_classes and classes:
        info["classes"] = list(classes)
    meta = {"gankit": json.dumps(info)}
    atomic_write(Path(run_dir) / name, lambda tmp: save_file(tensors, tmp, metadata=meta))


def model_spec(cfg: config_mod.Config) -> dict[str, Any]:
    """What it takes to rebuild the generator: architecture and width, noise size, image shape, classes."""
    return {"model": cfg.model, "g_width": cfg.g_width, "z_dim": cfg.z_dim, "channels": cfg.channels,
            "image_size": cfg.image_size, "num_classes": cfg.num_classes}


def load_run_config(run_dir: str | Path) -> config_mod.Config:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise GankitError(f"run directory not found: {run_dir}")
    if not (run_dir / CONFIG).is_file():
        raise GankitError(f"{run_dir} has no {CONFIG}: is this a gankit run directory?")
    return config_mod.load(run_dir / CONFIG, run=True)


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu",
                   name: str = GENERATOR) -> tuple[torch.nn.Module, config_mod.Config]:
    """Rebuild the generator from RUN_DIR/config.toml and its safetensors weights, in eval mode."""
    cfg = load_run_config(run_dir)
    path = Path(run_dir) / name
    if cfg.channels not in (1, 3) or cfg.conditional == "auto":
        raise GankitError(f"{run_dir} has not started training yet (its {CONFIG} still holds auto values)")
    if not path.is_file():
        if name == BEST and (Path(run_dir) / GENERATOR).is_file():
            raise GankitError(f"{run_dir} has no {name}: it is kept by the evaluations during training, and this "
                              "run made none (eval_every=0, or unlabeled data without an evaluator); "
                              "leave out --best to use the last generator")
        raise GankitError(f"{run_dir} has no {name} yet: train at least one epoch first")
    try:
        weights = load_file(str(path), device=str(device))
    except (SafetensorError, OSError, ValueError) as exc:
        raise GankitError(f"{path} is corrupt or unreadable: {exc}") from None
    generator = build_generator(cfg.model, cfg.z_dim, cfg.channels, cfg.image_size, cfg.num_classes,
                                cfg.g_width).to(device)
    try:
        generator.load_state_dict(weights)
    except RuntimeError:
        raise GankitError(f"{path} does not match the model in {CONFIG} ({cfg.model}, z_dim {cfg.z_dim}, "
                          f"{cfg.channels}x{cfg.image_size}x{cfg.image_size})") from None
    return generator.eval(), cfg


def export_info(run_dir: str | Path, name: str = GENERATOR) -> dict[str, Any]:
    """The metadata of an exported generator: model spec, and the epoch and step it was saved at."""
    path = Path(run_dir) / name
    try:
        with safe_open(str(path), "pt") as fh:
            return json.loads((fh.metadata() or {}).get("gankit", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}
