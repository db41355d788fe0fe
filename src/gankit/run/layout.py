"""Every file name of a run directory and of a detector folder, defined here once and used everywhere else
(besides the lock file, which gankit.run.lock owns, and the detector folder's marker in gankit.detect.store).

RUN_DIR/
  config.toml              the resolved config: all that generate/evaluate/report need to rebuild the models
  checkpoint.pt            both models, both optimizers, epoch/step, RNG states, fixed noise (torch.save)
  generator.safetensors    generator weights for inference; the model config rides in its metadata
  best.safetensors         the generator of the lowest FD so far (when the run is evaluated)
  metrics.jsonl            one JSON object per logged step / epoch / evaluation / health finding
  samples/epoch_NNN.png    fixed-noise grids;  tb/  TensorBoard events
  reals.png                real training images, laid out as the sample grids are (written at the start)
  copies.png               by `gankit evaluate`: the fakes closest to a training image, each beside that image
  loss_curves.png, progress.gif    written at the end of training;  report.html    by `gankit report`

DETECTOR_DIR/ (gankit.detect.store)
  detector.toml, detector.safetensors, trained_on.json, metrics.jsonl (its evaluations), roc.png, report.html
"""

from __future__ import annotations

import os
from pathlib import Path

from gankit.run.lock import LOCK

CONFIG = "config.toml"
CHECKPOINT = "checkpoint.pt"
GENERATOR = "generator.safetensors"
BEST = "best.safetensors"
METRICS = "metrics.jsonl"
SAMPLES = "samples"
TENSORBOARD = "tb"
LOSS_CURVES = "loss_curves.png"
PROGRESS_GIF = "progress.gif"
REALS = "reals.png"  # real training images in the layout of the sample grids
COPIES = "copies.png"  # `gankit evaluate`: the fakes nearest to a training image, each beside it
REPORT = "report.html"

DETECTOR_CONFIG = "detector.toml"
DETECTOR_WEIGHTS = "detector.safetensors"
TRAINED_ON = "trained_on.json"
ROC = "roc.png"


EPOCH_GRIDS = "epoch_*.png"  # every epoch_grid(n) in SAMPLES


def epoch_grid(epoch: int) -> str:
    """The fixed-noise grid of an epoch, inside SAMPLES."""
    return f"epoch_{epoch:03d}.png"


def grid_epoch(path: str | Path) -> int | None:
    """The epoch of a file named as epoch_grid names them (epoch_007.png -> 7); None for any other name that
    EPOCH_GRIDS matches (a stray epoch_best.png is no epoch's grid)."""
    digits = Path(path).name.removeprefix("epoch_").removesuffix(".png")
    return int(digits) if Path(path).name == f"epoch_{digits}.png" and digits.isascii() and digits.isdigit() else None


def epoch_grids(run_dir: str | Path) -> list[Path]:
    """The run's epoch grids in samples/, in epoch order (other names EPOCH_GRIDS matches left out)."""
    found = (p for p in (Path(run_dir) / SAMPLES).glob(EPOCH_GRIDS) if grid_epoch(p) is not None)
    return sorted(found, key=grid_epoch)


def is_run_dir(folder: str | Path) -> bool:
    """Whether folder is a run directory, finished or not: its config.toml beside anything only a run writes (a
    run killed in its first epoch holds config.toml, .lock and metrics.jsonl, no checkpoint yet). The one test
    of every command that writes what it makes (gankit.inference.outputs): a run's files are its own."""
    folder = Path(folder)
    return (folder / CONFIG).is_file() and any(os.path.lexists(folder / name)
                                               for name in (CHECKPOINT, GENERATOR, BEST, METRICS, LOCK))
