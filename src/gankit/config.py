"""Training configuration: one flat dataclass, presets from the tutorials, TOML files and --set overrides.

Resolution order (later wins): dataclass defaults -> preset -> TOML file -> --set key=value -> explicit flags.
The resolved config is written to RUN_DIR/config.toml and is all that later commands read.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import tomli_w

from gankit.checks import MAX_EPOCH, SEED_LIMIT, expect
from gankit.data import folders, packs
from gankit.data.sources import normalize
from gankit.devices import native_bf16
from gankit.errors import GankitError
from gankit.files import atomic_write_text, read_regular_text
from gankit.images import parse_background
from gankit.models.registry import MODELS, parse_d_channels
from gankit.presets import PRESETS
from gankit.training.augment import parse_policy
from gankit.training.losses import LOSSES


@dataclass
class Config:
    # what to train
    preset: str = "dcgan"
    model: str = "dcgan"
    loss: str = "bce"  # bce | lsgan | hinge | wgan-gp (see gankit.training.losses)
    conditional: str | bool = "auto"  # class-conditional G (one-hot label) and projection D: true | false | auto
    #                                   (true for a source with labels of 2+ classes); resolved to a bool before
    #                                   training (resolve_for_data), and config.toml records what auto became
    num_classes: int = 0  # set from the data when conditional
    g_width: float = 1.0  # multiplies every G layer's channels (1 = the tutorial's network)
    d_width: float = 1.0  # multiplies every D layer's channels
    d_channels: str = ""  # D's layer widths, comma-separated, in place of the architecture's (e.g. 16,32,64)
    # data
    data: str = "mnist5k"
    data_dir: str = ""  # "" -> $GANKIT_DATA_DIR or ~/.cache/gankit/data
    image_size: int = 28
    channels: int = 0  # 0 -> whatever the source holds (folders: 1 if every image is grayscale, else 3)
    background: str = "white"  # folders: what transparent pixels are composited onto (a color, or none: the
    #                            alpha is dropped and the stored colors kept)
    subset: int = 0  # train on the first N images only (0 = all); handy for smoke tests
    rotation: float = 0.0  # random rotation, degrees, applied to the whole batch on the device
    hflip: bool = False  # random horizontal flip (for folders of faces, not for digits)
    # optimization
    z_dim: int = 64
    batch_size: int = 128
    epochs: int = 20
    lr: float = 2e-3
    beta1: float = 0.5
    beta2: float = 0.99
    label_smoothing: float = 0.0  # one-sided: real targets become 1 - label_smoothing (bce only)
    lr_d: float = 0.0  # D's learning rate; 0 = same as lr (set both for TTUR)
    n_critic: int = 0  # D steps per G step; 0 = the loss's own (5 for wgan-gp, else 1)
    gp_lambda: float = 10.0  # gradient penalty weight (wgan-gp)
    r1_gamma: float = 0.0  # R1 penalty on real images (bce, hinge); 0 = off
    r1_every: int = 16  # lazy R1: applied every this many D steps, scaled up to match
    spectral_norm: bool = False  # spectral normalization of every D layer
    d_norm: str = "auto"  # D's normalization: batch | layer | none; auto = layer for wgan-gp, else batch
    ema: float = 0.0  # generator EMA decay (e.g. 0.999); the EMA generator is sampled, evaluated, exported
    diffaug: str = ""  # differentiable augmentation of real and fake before D: translation,cutout,color
    ada: bool = False  # adaptive discriminator augmentation (gankit.training.ada): p follows D's overfitting
    ada_target: float = 0.6  # the r_t = E[sign(D(x_real))] that ADA holds D at (more augmentation above it)
    ada_kimg: float = 100.0  # ADA's speed: thousands of images for p to go from 0 to 1 at the fastest
    time_limit: float = 0.0  # seconds of training, then the run ends cleanly (0 = none); the epoch it stops in
    #                          counts as done, so a resumed run starts with the next one
    kimg: float = 0.0  # the training length in thousands of images shown, in place of epochs (0: epochs decides);
    #                    it means the same on a folder of any size (the last epoch may end part way)
    # machinery
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # bf16 autocast on CUDA
    # bf16 autocast on a CPU with native bf16 (AVX512-BF16/AMX); fp32, said, on others. auto: on where it was
    # measured to pay (cpu_bf16_pays), decided when the run starts and recorded in config.toml as true or false
    cpu_bf16: str | bool = "auto"
    channels_last: bool = True  # memory format for the conv models
    compile: bool = False  # torch.compile the models (pays off on long CUDA runs)
    fused: bool = True  # mlp + bce: the hand-written step (gankit.training.fused), same math, ~3x faster
    group_timeout: float = 300.0  # torchrun: seconds a process waits for a silent one before it stops (one line)
    # logging
    sample_count: int = 64  # images in the fixed-noise grid written every epoch
    log_every: int = 10  # steps between host syncs of the logged scalars (every step is still logged)
    # quality (in the evaluator's feature space; see gankit.quality.metrics)
    eval_every: int = 1  # epochs between evaluations (0 = off)
    eval_samples: int = 2000  # generated images per evaluation
    early_stop: int = 0  # stop when FD has not improved for this many evaluations (0 = never)
    evaluator: str = ""  # a classifier .safetensors; "" = the cached one for the data (trained on first need)
    # the cached evaluator's kind: classifier (needs labels), self (label-free, gankit.quality.selfsup), auto
    # (classifier when the source has labels, else self)
    evaluator_kind: str = "auto"
    holdout: float = 0.0  # share of the images never trained on (the floor's and the copy test's): 0 to 0.5
    data_changed_ok: bool = False  # resume although the source's images changed since the checkpoint was written

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


FIELDS = {f.name: f for f in fields(Config)}
EVALUATOR_KINDS = ("auto", "classifier", "self")
# Keys that a resumed run may change; everything else would make the checkpoint meaningless.
RESUMABLE_KEYS = {"epochs", "kimg", "device", "amp", "cpu_bf16", "compile", "fused", "log_every", "eval_every",
                  "early_stop", "time_limit", "evaluator_kind", "group_timeout", "data_changed_ok"}
D_NORMS = ("auto", "batch", "layer", "none")
# Sizes past what any architecture here or a machine's memory holds are refused before anything is allocated.
MAX_IMAGE_SIZE, MAX_Z_DIM, MAX_BATCH, MAX_EVAL_SAMPLES = 1024, 4096, 65536, 100_000
MAX_CLASSES, MAX_CHANNELS = 10_000, 8192  # a conditional model's classes; a layer's width (d_channels)
# Every size that allocates, bounded in one place: config validation, a detector's settings (gankit.detect) and
# the commands' --image-size check values against this table with `within`.
LIMITS = {"image_size": (8, MAX_IMAGE_SIZE), "z_dim": (1, MAX_Z_DIM), "batch_size": (1, MAX_BATCH),
          "eval_samples": (10, MAX_EVAL_SAMPLES), "num_classes": (0, MAX_CLASSES), "d_channels": (1, MAX_CHANNELS),
          "epochs": (1, MAX_EPOCH)}
MAX_KIMG = 1e7  # ten billion images: past any run, and small enough that the epochs it spans stay exact
COLOR_PRESET, COLOR_SIZE = "color", 32  # what a folder of color pictures trains with when nothing is named
AUTO_KEYS = ("conditional", "cpu_bf16")  # true, false or auto (decided when the run starts)
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
DEVICE = re.compile(r"auto|cpu|cuda(:\d+)?")  # what device / --device accept


def _coerce(key: str, value: Any) -> Any:
    """Convert a TOML value or a --set string to the field's type, or raise GankitError."""
    if key not in FIELDS:
        raise GankitError(f"unknown config key '{key}' (known: {', '.join(sorted(FIELDS))})")
    kind = type(getattr(Config(), key))
    if key in AUTO_KEYS:  # auto, or a bool (from true/false/yes/no/1/0: older config.toml files hold strings)
        text = str(value).strip().lower()
        flag = value if isinstance(value, bool) else _BOOL_WORDS.get(text)
        if flag is not None:
            return flag
        if text != "auto":
            raise GankitError(f"config key '{key}' expects true, false or auto, got '{value}'")
        return text
    if isinstance(value, str) and kind is not str:
        text = value.strip()
        try:
            if kind is bool:
                return _BOOL_WORDS[text.lower()]
            return kind(text)
        except (ValueError, KeyError):
            raise GankitError(f"config key '{key}' expects {kind.__name__}, got '{value}'") from None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise GankitError(f"config key '{key}' expects {kind.__name__}, got {value!r}")
    return value


def parse_sets(items: list[str] | None) -> dict[str, Any]:
    """Parse ["lr=1e-3", "rotation=0"] into a dict of raw strings."""
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise GankitError(f"--set expects key=value, got '{item}'")
        out[key.strip()] = value
    return out


def read_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:  # (a FIFO or a folder there: one line saying what it is, from the reader)
        return tomllib.loads(read_regular_text(path))
    except (FileNotFoundError, NotADirectoryError):
        raise GankitError(f"config file not found: {path}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise GankitError(f"config file {path} is not valid TOML: {str(exc).splitlines()[0]}") from None
    except RecursionError:
        raise GankitError(f"config file {path} is not valid TOML: nested too deeply") from None


def resolve(preset: str | None = None, file: str | Path | None = None,
            sets: dict[str, Any] | None = None, notes: list[str] | None = None, **flags: Any) -> Config:
    """Build a validated Config from a preset name, a TOML file, --set values and explicit flags.

    What the data decides when nothing else does (data_defaults): a folder of color pictures gets the color
    preset and its image size, a pack its own image size; a bare folder path is taken as folder:PATH. notes,
    when given, receives a line for each such decision (the caller says them)."""
    values: dict[str, Any] = {}
    if file is not None:
        values.update(read_toml(file))
    explicit = {**values, **(sets or {}), **{k: v for k, v in flags.items() if v is not None}}
    preset = preset or explicit.get("preset")
    if preset is not None and preset not in PRESETS:
        raise GankitError(f"unknown preset '{preset}' (choose from: {', '.join(PRESETS)})")
    chosen = data_defaults(str(explicit.get("data", PRESETS[preset or Config.preset].get("data", Config.data))),
                           preset, "image_size" in explicit, notes if notes is not None else [])
    preset = preset or chosen.pop("preset", Config.preset)
    merged: dict[str, Any] = {**PRESETS[preset], **chosen, **explicit, "preset": preset}
    if "data" in chosen:  # a bare folder path as folder:PATH, over the path as typed
        merged["data"] = chosen["data"]
    # the length named last wins (file < --set < flags): epochs there, without kimg, over any kimg before it
    lengths = [{k: v for k, v in level.items() if k in ("epochs", "kimg") and v is not None}
               for level in (flags, sets or {}, values)]
    named = next((level for level in lengths if level), {})
    if "epochs" in named and "kimg" not in named:
        merged["kimg"] = 0.0
    cfg = Config(**{k: _coerce(k, v) for k, v in merged.items()})
    validate(cfg)
    return cfg


def data_defaults(data: str, preset: str | None, sized: bool, notes: list[str]) -> dict[str, Any]:
    """Values the source decides when the user did not: data (a bare folder path -> folder:PATH), preset (a
    folder of color pictures -> color, when no preset was named) and image_size (a color folder -> the
    preset's size, or 32 beside a preset that has none; a pack -> the size it holds). A line per decision is
    appended to notes."""
    out: dict[str, Any] = {}
    source, note = normalize(data)
    if note:
        out["data"] = source
        notes.append(note)
    kind, _, where = source.partition(":")
    root = Path(where).expanduser()
    if kind == "packed" and not sized and (root / packs.META).is_file():
        try:
            out["image_size"] = packs.open_pack(root).meta["image_size"]
        except GankitError:
            pass  # loading says what is wrong with it
    if kind != "folder" or not root.is_dir():
        return out
    seen = folders.look(root)
    if seen is None or not seen[0]:
        return out
    width, height = seen[1]
    said = []
    if preset is None:
        out["preset"] = preset = COLOR_PRESET
        said.append(f"the {preset} preset")
    if not sized:
        out["image_size"] = size = PRESETS[preset].get("image_size", COLOR_SIZE)
        said.append(f"at {size}x{size} (quick on a CPU; --image-size 64 keeps more detail for ~4x the time)")
    if said:
        notes.append(f"{source} holds color pictures (about {width}x{height}): training {' '.join(said)}")
    return out


def validate(cfg: Config) -> None:
    def need(ok: bool, message: str) -> None:
        if not ok:
            raise GankitError(message)

    for key, value in cfg.to_dict().items():
        need(not isinstance(value, float) or math.isfinite(value), f"{key} must be a finite number, got {value}")
        need(not isinstance(value, str) or "\0" not in value, f"{key} holds a NUL character, which no path or name has")
    need(cfg.model in MODELS, f"unknown model '{cfg.model}' (choose from: {', '.join(MODELS)})")
    need(cfg.loss in LOSSES, f"unknown loss '{cfg.loss}' (choose from: {', '.join(LOSSES)})")
    need(cfg.lr > 0, f"lr must be > 0, got {cfg.lr}")
    need(0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1, f"beta1 and beta2 must be in [0, 1), got {cfg.beta1}, {cfg.beta2}")
    need(cfg.batch_size >= 1, f"batch_size must be >= 1, got {cfg.batch_size}")
    need(cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}")
    need(cfg.z_dim >= 1, f"z_dim must be >= 1, got {cfg.z_dim}")
    need(8 <= cfg.image_size <= MAX_IMAGE_SIZE, f"image_size must be in [8, {MAX_IMAGE_SIZE}], got {cfg.image_size}")
    need(cfg.z_dim <= MAX_Z_DIM, f"z_dim must be <= {MAX_Z_DIM}, got {cfg.z_dim}")
    need(0 <= cfg.seed < SEED_LIMIT, f"seed must be in [0, 2**63), got {cfg.seed}")
    need(cfg.batch_size <= MAX_BATCH, f"batch_size must be <= {MAX_BATCH}, got {cfg.batch_size}")
    need(cfg.eval_samples <= MAX_EVAL_SAMPLES, f"eval_samples must be <= {MAX_EVAL_SAMPLES}, got {cfg.eval_samples}")
    need(cfg.channels in (0, 1, 3), f"channels must be 0 (auto), 1 or 3, got {cfg.channels}")
    need(cfg.subset >= 0, f"subset must be >= 0, got {cfg.subset}")
    need(0 <= cfg.rotation <= 180, f"rotation must be in [0, 180] degrees, got {cfg.rotation}")
    need(0 <= cfg.label_smoothing < 0.5, f"label_smoothing must be in [0, 0.5), got {cfg.label_smoothing}")
    need(1 <= cfg.sample_count <= 1024, f"sample_count must be in [1, 1024], got {cfg.sample_count}")
    need(cfg.log_every >= 1, f"log_every must be >= 1, got {cfg.log_every}")
    need(cfg.eval_every >= 0, f"eval_every must be >= 0 (0 = off), got {cfg.eval_every}")
    need(cfg.eval_samples >= 10, f"eval_samples must be >= 10, got {cfg.eval_samples}")
    need(cfg.early_stop >= 0, f"early_stop must be >= 0 (0 = off), got {cfg.early_stop}")
    need(cfg.lr_d >= 0, f"lr_d must be >= 0 (0 = same as lr), got {cfg.lr_d}")
    need(cfg.n_critic >= 0, f"n_critic must be >= 0 (0 = the loss's default), got {cfg.n_critic}")
    need(cfg.gp_lambda >= 0, f"gp_lambda must be >= 0, got {cfg.gp_lambda}")
    need(cfg.r1_gamma >= 0, f"r1_gamma must be >= 0 (0 = off), got {cfg.r1_gamma}")
    need(cfg.r1_every >= 1, f"r1_every must be >= 1, got {cfg.r1_every}")
    need(cfg.r1_gamma == 0 or cfg.loss in ("bce", "hinge"),
         f"r1_gamma works with loss bce or hinge, not {cfg.loss} (wgan-gp has its own penalty)")
    need(cfg.label_smoothing == 0 or cfg.loss == "bce", f"label_smoothing works with loss bce only, not {cfg.loss}")
    need(cfg.d_norm in D_NORMS, f"d_norm must be one of {', '.join(D_NORMS)}, got '{cfg.d_norm}'")
    for key in AUTO_KEYS:
        value = getattr(cfg, key)
        need(value == "auto" or isinstance(value, bool),
             f"config key '{key}' expects true, false or auto, got {value!r}")
    need(not (cfg.loss == "wgan-gp" and cfg.d_norm == "batch"),
         "wgan-gp penalizes per-sample gradients, which BatchNorm mixes across the batch: use d_norm=layer or none")
    need(cfg.ema == 0 or 0.5 <= cfg.ema < 1, f"ema must be 0 (off) or a decay in [0.5, 1), got {cfg.ema}")
    need(0 <= cfg.kimg <= MAX_KIMG, f"kimg must be in [0, {MAX_KIMG:g}] (0 = epochs decides), got {cfg.kimg}")
    need(0 < cfg.ada_target < 1, f"ada_target must be in (0, 1), got {cfg.ada_target}")
    need(cfg.ada_kimg > 0, f"ada_kimg must be > 0, got {cfg.ada_kimg}")
    need(cfg.time_limit >= 0, f"time_limit must be >= 0 seconds (0 = none), got {cfg.time_limit}")
    need(1 <= cfg.group_timeout <= 86400, f"group_timeout must be in [1, 86400] seconds, got {cfg.group_timeout}")
    within("num_classes", cfg.num_classes)
    within("epochs", cfg.epochs)
    need(0 < cfg.g_width <= 16 and 0 < cfg.d_width <= 16,
         f"g_width and d_width must be in (0, 16], got {cfg.g_width}, {cfg.d_width}")
    need(0 <= cfg.holdout <= 0.5, f"holdout must be a share of the images in [0, 0.5], got {cfg.holdout}")
    need(cfg.evaluator_kind in EVALUATOR_KINDS,
         f"evaluator_kind must be one of {', '.join(EVALUATOR_KINDS)}, got '{cfg.evaluator_kind}'")
    parse_policy(cfg.diffaug)
    parse_background(cfg.background)
    need(DEVICE.fullmatch(cfg.device) is not None,
         f"device must be auto, cpu or cuda[:N], got '{cfg.device}'")
    MODELS[cfg.model].check_size(cfg.image_size)
    d_widths(cfg)


def d_widths(cfg: Config) -> tuple[int, ...]:
    """cfg.d_channels as numbers (() = the architecture's own), checked against the architecture's layers and
    LIMITS."""
    widths = parse_d_channels(cfg.model, cfg.image_size, cfg.d_channels)
    for width in widths:
        within("d_channels", width, "each of d_channels")
    return widths


def within(key: str, value: Any, name: str | None = None) -> int:
    """value, a whole number within LIMITS[key]; else GankitError naming the limit (name: the flag or key)."""
    low, high = LIMITS[key]
    return expect(value, int, name or key, low, high)


def save(cfg: Config, path: str | Path) -> None:
    """Write the resolved config atomically (a crash never leaves a torn config.toml)."""
    atomic_write_text(path, "# gankit run configuration (resolved)\n" + tomli_w.dumps(cfg.to_dict()))


# What a run's config.toml must say for the run to be rebuilt (gankit writes every key; these have no default
# that could stand in for a lost value).
RUN_KEYS = ("model", "data", "image_size", "channels", "z_dim", "conditional", "num_classes")


def load(path: str | Path, run: bool = False) -> Config:
    """A config file, coerced and validated like --config; run=True: a run's config.toml, which must hold
    every key that rebuilds the models (a run that has not started training yet may still hold auto values)."""
    values = read_toml(path)
    try:
        if run:
            missing = [k for k in RUN_KEYS if k not in values]
            if missing:
                raise GankitError(f"lacks {', '.join(missing)}: not the config.toml of a gankit run")
        cfg = Config(**{k: _coerce(k, v) for k, v in values.items()})
        validate(cfg)
    except GankitError as exc:
        raise GankitError(f"{path}: {exc}") from None
    return cfg


def override(cfg: Config, changes: dict[str, Any]) -> Config:
    """A copy of cfg with changes applied (coerced and validated)."""
    new = dataclasses.replace(cfg, **{k: _coerce(k, v) for k, v in changes.items()})
    validate(new)
    return new


def resolve_for_data(cfg: Config, classes: int, channels: int) -> Config:
    """The run's concrete config: every "auto" value decided from the data, once, before anything is built.

    classes: the number of classes the source is labeled with (0 when unlabeled); channels: what it holds.
    conditional becomes a bool (and num_classes follows it), channels the source's, n_critic and d_norm the
    loss's own when left at 0 / auto. A concrete config (a resumed run's) passes unchanged, after a check that
    the data still fits it.
    """
    labeled = classes >= 2
    if cfg.conditional is True and not labeled:
        raise GankitError(f"conditional=true needs a labeled source (2 or more classes), and {cfg.data} has "
                          "none (use class subfolders for a folder source)")
    conditional = labeled if cfg.conditional == "auto" else cfg.conditional
    if conditional and cfg.num_classes and cfg.num_classes != classes:
        raise GankitError(f"this run's generator draws {cfg.num_classes} classes, and {cfg.data} now has {classes}: "
                          "train a new run on this data")
    loss = LOSSES[cfg.loss]
    return override(cfg, {"conditional": conditional, "num_classes": classes if conditional else 0,
                          "cpu_bf16": cpu_bf16_pays(cfg) if cfg.cpu_bf16 == "auto" else cfg.cpu_bf16,
                          "channels": channels, "n_critic": cfg.n_critic or loss.n_critic,
                          "d_norm": loss.d_norm if cfg.d_norm == "auto" else cfg.d_norm})


def cpu_bf16_pays(cfg: Config) -> bool:
    """What cpu_bf16=auto means on this machine: bf16 autocast for the convolutional models where the CPU computes
    bf16 in hardware (measured faster at the same FD: BENCHMARKS.md, benchmarks/bf16.py); never for the mlp pair,
    whose hand-written fp32 step (gankit.training.fused) is faster than any autograd step."""
    return cfg.model != "mlp" and native_bf16()


@dataclass(frozen=True)
class Plan:
    """How this process runs a concrete config: choices of machinery that never change the math (up to
    floating point) and so are not part of the run's identity. Decided once, by `plan`."""

    fused: bool  # the hand-written mlp + bce step (gankit.training.fused) in place of autograd
    autocast: bool  # bf16 autocast of the forward passes (CUDA with amp; a CPU with native bf16 with cpu_bf16)
    channels_last: bool  # channels-last memory format for the conv models
    compile: bool  # torch.compile the forward passes


def plan(cfg: Config, device_type: str, world_size: int = 1) -> Plan:
    """The machinery for a concrete config (resolve_for_data) on a device of this type ("cpu", "cuda"), in
    one of world_size processes (the fused step does not average gradients over processes: autograd does)."""
    if any(getattr(cfg, key) == "auto" for key in AUTO_KEYS):
        raise ValueError("plan() needs a concrete config: call resolve_for_data first")
    autocast = (cfg.amp and device_type == "cuda") or (cfg.cpu_bf16 and device_type == "cpu" and native_bf16())
    # the fused step writes out the plain tutorial pair's math: anything that changes the step rules it out
    fused = (cfg.fused and cfg.model == "mlp" and cfg.loss == "bce" and not cfg.conditional and cfg.n_critic <= 1
             and not cfg.r1_gamma and not cfg.diffaug and not cfg.ada and not cfg.spectral_norm and not cfg.compile
             and not autocast and world_size == 1)
    return Plan(fused=fused, autocast=autocast, channels_last=cfg.channels_last and cfg.model != "mlp",
                compile=cfg.compile)


__all__ = ["Config", "PRESETS", "RESUMABLE_KEYS", "resolve", "validate", "save", "load", "override",
           "parse_sets", "d_widths", "resolve_for_data", "Plan", "plan"]
