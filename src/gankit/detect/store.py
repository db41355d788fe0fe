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
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import tomli_w
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from gankit.checks import MAX_EPOCH, MAX_STEP, Field, expect_fields
from gankit.config import MAX_IMAGE_SIZE
from gankit.detect.methods import METHODS
from gankit.errors import GankitError
from gankit.files import (
    atomic_folder,
    atomic_write,
    atomic_write_text,
    irregular,
    read_regular_text,
    regular,
    utf8_name,
)
from gankit.inference.outputs import check_place, holder
from gankit.run.layout import CONFIG, DETECTOR_CONFIG, DETECTOR_WEIGHTS, METRICS, TRAINED_ON
from gankit.run.metrics_log import MetricsFile
from gankit.weights import check_tensors


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


def check_out(out: str | Path) -> Path:
    """The place for a new detector: it must not exist (or be an empty folder), nor be inside a run directory,
    a detector folder or a pack (gankit.inference.outputs). Checked before any work is done."""
    out = Path(out)
    utf8_name(out)  # its weights are safetensors
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise GankitError(f"{out} already exists: choose a new --out for the detector (nothing was changed)")
    check_place(out, "the detector (put detectors beside runs, not in them)", folder=True)
    return out


def check_writable(path: Path) -> None:
    """Before a detector folder is written to (an evaluation's record and ROC curve, its report): refused when
    it sits inside a run directory, a pack or another detector, whose files are their own."""
    found = holder(path)
    if found is not None:
        raise GankitError(f"the detector {path} is inside the {found[0]} {found[1]}: gankit writes nothing there; "
                          "move the detector folder beside the run (nothing was changed)")


def write(out: str | Path, config: dict[str, Any], tensors: dict[str, torch.Tensor], trained_on: dict[str, Any],
          records: list[dict[str, Any]]) -> Path:
    """Write a detector folder at out, whole or not at all (see the module's note)."""
    out = check_out(out)

    def fill(tmp: Path) -> None:
        atomic_write_text(tmp / DETECTOR_CONFIG,
                          "# gankit detector (see gankit.detect.store)\n" + tomli_w.dumps(config))
        weights = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
        meta = {"gankit_detector": config["method"]}
        atomic_write(tmp / DETECTOR_WEIGHTS, lambda t: save_file(weights, t, metadata=meta))
        atomic_write_text(tmp / TRAINED_ON, json.dumps(trained_on, indent=2) + "\n")
        MetricsFile(tmp / METRICS).append(*records)

    atomic_folder(out, fill)  # an empty folder given as --out: the detector takes its place
    return out


def read(path: str | Path) -> Stored:
    """A detector folder, or one line on why it is not one."""
    path = Path(path)
    utf8_name(path, "rename the detector folder")
    if not path.is_dir():
        raise GankitError(f"detector directory not found: {path}")
    if not regular(path / DETECTOR_CONFIG):  # a FIFO or a folder there: one line saying what it is
        hint = (f"; it is a run directory: make a detector of its discriminator with `gankit detect train "
                f"--method discriminator --run {path} --out DIR`") if (path / CONFIG).is_file() else ""
        raise GankitError(f"{path} is not a detector directory (no {DETECTOR_CONFIG}){hint}")
    if name := irregular(path, (DETECTOR_CONFIG, DETECTOR_WEIGHTS, TRAINED_ON, METRICS)):
        raise GankitError(f"the detector {path} is damaged: {name}; train it again")
    try:
        config = tomllib.loads(read_regular_text(path / DETECTOR_CONFIG))
        tensors = load_file(str(path / DETECTOR_WEIGHTS))  # a regular file: checked above (irregular)
        trained_on = json.loads(read_regular_text(path / TRAINED_ON))
    except (OSError, ValueError, SafetensorError, UnicodeDecodeError) as exc:
        raise GankitError(f"the detector {path} is damaged or incomplete ({type(exc).__name__}: "
                          f"{str(exc).splitlines()[0][:120] if str(exc) else ''}): train it again") from None
    ok = (isinstance(config.get("method"), str) and isinstance(config.get("settings"), dict)
          and all(isinstance(config.get(k), int) for k in ("channels", "image_size")) and isinstance(trained_on, dict))
    if not ok:
        raise GankitError(f"{path / DETECTOR_CONFIG} lacks method, channels, image_size or settings: "
                          "not a gankit detector")
    try:
        _check(config, tensors, trained_on)
    except GankitError as exc:
        raise GankitError(f"the detector {path} is damaged: {exc}; train it again") from None
    return Stored(path, config, tensors, trained_on)


# What detector.toml and trained_on.json hold, checked when a detector is read (each method's settings: its
# Detector.SETTINGS); every value is checked before anything is built from it or shown.
CONFIG_FIELDS = {"method": Field(str, choices=tuple(METHODS)), "channels": Field(int, choices=(1, 3)),
                 "image_size": Field(int, 8, MAX_IMAGE_SIZE), "settings": Field(dict)}
TRAINED_ON_FIELDS = {"trained": Field(bool, optional=True), "seconds": Field(float, 0, None, optional=True),
                     "real": Field(dict, optional=True), "fakes": Field(list, 0, 10_000, optional=True),
                     "validation": Field(dict, optional=True), "run": Field(str, 0, 4096, optional=True),
                     "epoch": Field(int, 0, MAX_EPOCH, optional=True), "step": Field(int, 0, MAX_STEP, optional=True)}


def _check(config: dict[str, Any], tensors: dict[str, torch.Tensor], trained_on: dict[str, Any]) -> None:
    expect_fields(config, CONFIG_FIELDS, DETECTOR_CONFIG)
    expect_fields(config["settings"], METHODS[config["method"]].SETTINGS, f"{DETECTOR_CONFIG} [settings]")
    for key in ("channels", "image_size"):  # a method that keeps the shape in its settings keeps the folder's
        if config["settings"].get(key, config[key]) != config[key]:
            raise GankitError(f"{DETECTOR_CONFIG}: its settings say {key} {config['settings'][key]!r} and the "
                              f"detector {config[key]!r}")
    expect_fields(trained_on, TRAINED_ON_FIELDS, TRAINED_ON)
    if not all(isinstance(f, dict) for f in trained_on.get("fakes", [])):
        raise GankitError(f"{TRAINED_ON}: 'fakes' must be a list of tables (JSON objects)")
    check_tensors(tensors, DETECTOR_WEIGHTS)  # real numbers, all finite


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
            config = tomllib.loads(read_regular_text(folder / DETECTOR_CONFIG))
            rows = evaluations(folder)
        except (OSError, ValueError, GankitError):
            continue  # a damaged detector is its own report's business, not this run's
        for row in rows:
            fakes = row.get("fakes") if isinstance(row.get("fakes"), list) else []
            if any(isinstance(f, dict) and f.get("kind") == "run" and f.get("path") == str(run) for f in fakes):
                yield folder, config, row
