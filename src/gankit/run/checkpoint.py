"""RUN_DIR/checkpoint.pt: written atomically, loaded without executing pickled code, and every key, type and
shape checked before anything is restored (a crafted or damaged checkpoint is one line, never a traceback)."""

from __future__ import annotations

import os
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch

from gankit import config
from gankit.checks import MAX_EPOCH, MAX_STEP, Field, expect_fields
from gankit.errors import GankitError
from gankit.files import atomic_write, open_regular, regular
from gankit.run.layout import CHECKPOINT
from gankit.weights import check_tensor


def save_checkpoint(state: dict[str, Any], run_dir: str | Path) -> None:
    atomic_write(Path(run_dir) / CHECKPOINT, lambda tmp: torch.save(state, tmp))


def load_checkpoint(run_dir: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load RUN_DIR/checkpoint.pt without executing pickled code (weights_only=True)."""
    path = Path(run_dir) / CHECKPOINT
    regular(path, missing=f"no checkpoint in {run_dir} (expected {path}): is this a gankit run directory?")
    try:
        with open_regular(path) as fh, warnings.catch_warnings():  # the file checked is the file loaded
            warnings.simplefilter("ignore")
            check_archive(fh, path)
            state = torch.load(fh, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, zipfile.BadZipFile, EOFError, ValueError, OSError) as exc:
        raise GankitError(f"checkpoint {path} is corrupt or unreadable ({type(exc).__name__}); "
                          "it cannot be resumed") from None
    if not isinstance(state, dict):
        raise GankitError(f"checkpoint {path} holds a {type(state).__name__}, not a gankit checkpoint")
    missing = {"generator", "discriminator", "opt_g", "opt_d", "epoch", "step"} - set(state)
    if missing:
        raise GankitError(f"checkpoint {path} lacks {', '.join(sorted(missing))}: not a gankit checkpoint")
    return state


def check_archive(fh, path: Path) -> None:
    """Before torch.load: the checkpoint must be the zip archive torch.save writes, whose entries are stored as
    they are (never compressed) and so cannot declare more bytes than the file holds. A crafted archive whose
    entries inflate (a few MB of DEFLATE'd zeros declaring GBs) or whose directory lies about its sizes is
    refused from its directory alone, before anything is inflated or allocated; so is the legacy (pre-zip)
    format, whose pickle declares storage sizes that are allocated before they are read."""
    size = os.fstat(fh.fileno()).st_size
    try:
        entries = zipfile.ZipFile(fh).infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, ValueError, EOFError, OSError):
        raise GankitError(f"checkpoint {path} is corrupt or unreadable, or not a gankit checkpoint (not the zip "
                          "archive torch.save writes); it cannot be resumed") from None
    declared = 0
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.compress_size != entry.file_size:
            raise GankitError(f"checkpoint {path} holds a compressed entry ({entry.filename[:80]!r} inflates to "
                              f"{entry.file_size:,} bytes): torch.save stores every entry as it is, so this is not "
                              "a gankit checkpoint; it is refused before anything is inflated")
        declared += entry.file_size
    if declared > size:
        raise GankitError(f"checkpoint {path} declares {declared:,} bytes of entries in a file of {size:,}: it is "
                          "corrupt or crafted; it cannot be resumed")
    fh.seek(0)


# What a checkpoint holds (gankit.training.trainer.Trainer.state_dict writes exactly these) and the type of each value.
MAX_GRID_NOISE = 1024  # config's largest sample_count; a conditional grid rounds it up by less than a row
STATE_KEYS: dict[str, type] = {"generator": dict, "discriminator": dict, "opt_g": dict, "opt_d": dict,
                               "epoch": int, "step": int, "rng": torch.Tensor, "fixed_noise": torch.Tensor}
# Written by every gankit since they were added; older checkpoints resume without them.
OPTIONAL_KEYS: dict[str, type] = {"ema": dict, "ada": dict, "loss_g": torch.Tensor, "rng_device": str, "quality": dict,
                                  "config": dict, "data": str}


def check_state(state: dict[str, Any], cfg: config.Config, models: dict[str, torch.nn.Module],
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
        expect_fields(saved, {"updates": Field(int, 0, MAX_STEP)}, "its EMA state")
        check_weights("EMA generator", saved["model"], ema.model)
    noise = state["fixed_noise"]
    if (noise.dim() != 2 or not 1 <= noise.shape[0] <= MAX_GRID_NOISE + cfg.num_classes
            or noise.shape[1] != cfg.z_dim or noise.dtype != torch.float32):
        raise GankitError(f"its fixed noise is a {noise.dtype} tensor of shape {tuple(noise.shape)}, not N x "
                          f"{cfg.z_dim} floats (float32, z_dim {cfg.z_dim})")
    check_tensor(noise, "its fixed noise")
    loss_g = state.get("loss_g")
    if loss_g is not None:
        if loss_g.numel() != 1:
            raise GankitError(f"its loss_g holds {loss_g.numel()} values, not one")
        check_tensor(loss_g, "its loss_g")
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
        check_tensor(value, f"its {name} entry '{key}'", expected[key])  # real numbers, finite, of the model's kind


def set_rng_state(rng: torch.Generator, state: torch.Tensor) -> None:
    try:
        rng.set_state(state.cpu())
    except (RuntimeError, TypeError) as exc:
        raise GankitError(f"its rng is not a random generator state ({str(exc).splitlines()[0]})") from None
