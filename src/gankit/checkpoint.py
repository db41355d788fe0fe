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
import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from . import config as config_mod
from .errors import GankitError
from .models import build_generator

CONFIG = "config.toml"
CHECKPOINT = "checkpoint.pt"
GENERATOR = "generator.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
TENSORBOARD = "tb"


def atomic_write(path: str | Path, write: Callable[[str], None]) -> None:
    """Call write(tmp_path) on a temporary file beside `path`, flush it to disk, then rename it over `path`.

    A crash at any moment leaves either the old file or the new one, never a torn one.
    """
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the permissions open() would
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def save_checkpoint(state: dict[str, Any], run_dir: str | Path) -> None:
    atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load RUN_DIR/checkpoint.pt without executing pickled code (weights_only=True)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise GankitError(f"no checkpoint in {run_dir} (expected {path}): is this a gankit run directory?")
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise GankitError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); "
                          "it cannot be resumed") from None
    missing = {"generator", "discriminator", "opt_g", "opt_d", "epoch", "step"} - set(state)
    if missing:
        raise GankitError(f"checkpoint {path} lacks {', '.join(sorted(missing))}: not a gankit checkpoint")
    return state


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
    return config_mod.load(run_dir / CONFIG)


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu",
                   name: str = GENERATOR) -> tuple[torch.nn.Module, config_mod.Config]:
    """Rebuild the generator from RUN_DIR/config.toml and its safetensors weights, in eval mode."""
    cfg = load_run_config(run_dir)
    path = Path(run_dir) / name
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
    from safetensors import safe_open

    path = Path(run_dir) / name
    try:
        with safe_open(str(path), "pt") as fh:
            return json.loads((fh.metadata() or {}).get("gankit", "{}"))
    except (SafetensorError, OSError, ValueError):
        return {}
