"""A detector on disk: a folder that describes itself, like a run directory.

DETECTOR_DIR/
  detector.toml          the method, the image shape it takes, its settings (all that rebuilds it)
  detector.safetensors   what it learned (a CNN's weights, a logistic head, a copied evaluator or D), and the
                         64-bit hashes of every real and fake image it was trained on (real_hashes, fake_hashes;
                         a discriminator's of a run with holdout also held_hashes: the run's held-out images)
  trained_on.json        the real source and how it was split, the fakes (run, epoch, seed; or the files),
                         validation numbers, time
  metrics.jsonl          training records, then one "eval" record per `gankit detect eval` (gankit.run.metrics_log)
  roc.png                the ROC curve of the latest evaluation

The folder is written whole or not at all: everything goes into a hidden temporary folder beside it, which is
renamed into place at the end (a failed or killed training leaves no half detector; its leftover is removed by
the next training into the same place). A detector is never written inside a run directory. Nothing is
unpickled: weights are safetensors, the rest TOML and JSON.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import tomli_w
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gankit.errors import GankitError
from gankit.files import atomic_write, atomic_write_text, irregular
from gankit.run.layout import CHECKPOINT, CONFIG, DETECTOR_CONFIG, DETECTOR_WEIGHTS, GENERATOR, METRICS, TRAINED_ON
from gankit.run.metrics_log import MetricsFile


@dataclass
class Stored:
    """A detector folder as read: config (detector.toml), tensors, trained_on."""

    path: Path
    config: dict[str, Any]
    tensors: dict[str, torch.Tensor]
    trained_on: dict[str, Any]

    @property
    def shape(self) -> tuple[int, int]:
        return self.config["channels"], self.config["image_size"]

    def hashes(self, which: str) -> torch.Tensor:
        """The hashes of the real or fake images it was trained on (int64; empty when none were recorded)."""
        return self.tensors.get(f"{which}_hashes", torch.zeros(0, dtype=torch.int64))


def is_detector(path: str | Path) -> bool:
    return (Path(path) / DETECTOR_CONFIG).is_file()


def _inside_run(path: Path) -> Path | None:
    for folder in [path, *path.parents]:
        if (folder / CONFIG).is_file() and ((folder / CHECKPOINT).is_file() or (folder / GENERATOR).is_file()):
            return folder
    return None


def check_out(out: str | Path) -> Path:
    """The place for a new detector: it must not exist (or be an empty folder), nor be inside a run directory.
    Checked before any work is done."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GankitError(f"{out} already exists: choose a new --out for the detector (nothing was changed)")
    run = _inside_run(out.resolve())
    if run is not None:
        raise GankitError(f"{out} is inside the run directory {run}: put detectors beside runs, not in them")
    return out


def write(out: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], trained_on: dict[str, Any],
          records: list[dict[str, Any]]) -> Path:
    """Write a detector folder at out, whole or not at all (see the module's note)."""
    out = check_out(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for orphan in out.parent.glob(f".{out.name}.*.tmp"):  # left by a training killed while writing
        if orphan.is_dir() and (orphan / ".gankit-detector").is_file():
            shutil.rmtree(orphan, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        (tmp / ".gankit-detector").touch()
        atomic_write_text(tmp / DETECTOR_CONFIG,
                          "# gankit detector (see gankit.detect.store)\n" + tomli_w.dumps(config))
        weights = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"gankit_detector": config["method"]}
        atomic_write(tmp / DETECTOR_WEIGHTS, lambda t: save_file(weights, t, metadata=meta))
        atomic_write_text(tmp / TRAINED_ON, json.dumps(trained_on, indent=2) + "\n")
        MetricsFile(tmp / METRICS).append(*records)
        (tmp / ".gankit-detector").unlink()
        if out.is_dir():
            out.rmdir()  # an empty folder given as --out: the detector takes its place
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def read(path: str | Path) -> Stored:
    """A detector folder, or one line on why it is not one."""
    path = Path(path)
    if not path.is_dir():
        raise GankitError(f"detector directory not found: {path}")
    if not is_detector(path):
        hint = (f"; it is a run directory: make a detector of its discriminator with `gankit detect train "
                f"--method discriminator --run {path} --out DIR`") if (path / CONFIG).is_file() else ""
        raise GankitError(f"{path} is not a detector directory (no {DETECTOR_CONFIG}){hint}")
    if name := irregular(path, (DETECTOR_CONFIG, DETECTOR_WEIGHTS, TRAINED_ON, METRICS)):
        raise GankitError(f"the detector {path} is damaged: {name} is not a regular file; train it again")
    try:
        config = tomllib.loads((path / DETECTOR_CONFIG).read_text(encoding="utf-8"))
        tensors = load_file(str(path / DETECTOR_WEIGHTS))
        trained_on = json.loads((path / TRAINED_ON).read_text(encoding="utf-8"))
    except (OSError, ValueError, SafetensorError, UnicodeDecodeError) as exc:
        raise GankitError(f"the detector {path} is damaged or incomplete ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''}): train it again") from None
    ok = (isinstance(config.get("method"), str) and isinstance(config.get("settings"), dict)
          and all(isinstance(config.get(k), int) for k in ("channels", "image_size")) and isinstance(trained_on, dict))
    if not ok:
        raise GankitError(f"{path / DETECTOR_CONFIG} lacks method, channels, image_size or settings: "
                          "not a gankit detector")
    return Stored(path, config, tensors, trained_on)


def evaluations(path: str | Path) -> list[dict[str, Any]]:
    """The detector's evaluation records (metrics.jsonl, kind "eval"), oldest first."""
    return MetricsFile(Path(path) / METRICS).read("eval")


def evaluations_of_run(run_dir: str | Path) -> Iterator[tuple[Path, dict[str, Any], dict[str, Any]]]:
    """(detector folder, its config, an evaluation record) for every evaluation of the run's fakes by a detector
    that sits beside the run (in the same parent folder, e.g. runs/). Nothing is written to the run: detectors
    record which run their fakes came from, and the run's report looks for them."""
    run = Path(run_dir).resolve()
    for folder in sorted(run.parent.iterdir()):
        if folder == run or not folder.is_dir() or not is_detector(folder):
            continue
        try:
            config = tomllib.loads((folder / DETECTOR_CONFIG).read_text(encoding="utf-8"))
            rows = evaluations(folder)
        except (OSError, ValueError, GankitError):
            continue  # a damaged detector is its own report's business, not this run's
        for row in rows:
            fakes = row.get("fakes") if isinstance(row.get("fakes"), list) else []
            if any(isinstance(f, dict) and f.get("kind") == "run" and f.get("path") == str(run) for f in fakes):
                yield folder, config, row
