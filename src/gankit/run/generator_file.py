"""RUN_DIR/generator.safetensors and best.safetensors: the self-describing exported generator (weights, with the
model config, epoch, step and class names in the metadata), and the run's config.toml read back.

Everything after training (generate, evaluate, export, detect, gankit.load) rebuilds the generator from these."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from gankit import config as config_mod
from gankit.checks import MAX_EPOCH, MAX_STEP, Field, fitting
from gankit.errors import GankitError
from gankit.files import atomic_write, regular, utf8_name
from gankit.models.registry import build_generator
from gankit.run.layout import BEST, CONFIG, GENERATOR
from gankit.weights import check_tensors


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
    utf8_name(run_dir, "rename the run directory")  # not "corrupt": its files cannot be opened under that name
    if not run_dir.is_dir():
        raise GankitError(f"run directory not found: {run_dir}")
    regular(run_dir / CONFIG, missing=f"{run_dir} has no {CONFIG}: is this a gankit run directory?")
    return config_mod.load(run_dir / CONFIG, run=True)


def load_generator(run_dir: str | Path, device: str | torch.device = "cpu",
                   name: str = GENERATOR) -> tuple[torch.nn.Module, config_mod.Config]:
    """Rebuild the generator from RUN_DIR/config.toml and its safetensors weights, in eval mode."""
    cfg = load_run_config(run_dir)
    path = Path(run_dir) / name
    if cfg.channels not in (1, 3) or cfg.conditional == "auto":
        raise GankitError(f"{run_dir} has not started training yet (its {CONFIG} still holds auto values)")
    if not regular(path):  # a FIFO or a folder there is one line saying what it is
        if name == BEST and regular(Path(run_dir) / GENERATOR):
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
    check_tensors(weights, str(path), generator.state_dict())  # real, finite, of the model's kind, before it loads
    try:
        generator.load_state_dict(weights)
    except RuntimeError:
        raise GankitError(f"{path} does not match the model in {CONFIG} ({cfg.model}, z_dim {cfg.z_dim}, "
                          f"{cfg.channels}x{cfg.image_size}x{cfg.image_size})") from None
    return generator.eval(), cfg


def export_info(run_dir: str | Path, name: str = GENERATOR) -> dict[str, Any]:
    """The metadata of an exported generator: model spec, and the epoch and step it was saved at ({} when the file
    holds none, or something other than a JSON object)."""
    path = Path(run_dir) / name
    if not regular(path):
        return {}
    try:
        with safe_open(str(path), "pt") as fh:
            info = json.loads((fh.metadata() or {}).get("gankit", "{}"))
    except (SafetensorError, OSError, ValueError, RecursionError):
        return {}
    return fitting(info, INFO_FIELDS) if isinstance(info, dict) else {}


# What export_info passes on from the metadata (a value that does not fit is left out, as if unrecorded).
INFO_FIELDS = {"epoch": Field(int, 0, MAX_EPOCH), "step": Field(int, 0, MAX_STEP), "classes": Field(list, 0, 100_000)}
