"""`gankit detect eval` and `gankit detect score`: a detector measured on real and fake images it never saw.

Real images the detector was trained on (recorded as hashes when it was made) are left out wherever they come
from, and so are its training fakes; the two sides are balanced (as many fakes as real images). `jpeg` and `blur`
degrade every test image the same way (blur first), the robustness conditions of Wang et al. 2020. The result
is printed, appended to the detector's metrics.jsonl (one "eval" record) and drawn as a ROC curve (roc.png).
A discriminator detector of a run trained with holdout measures real images with the run's held-out ones.
`detect score` takes pictures at the detector's size, or with resize=True resizes the others and says so.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from gankit import checks
from gankit.checks import whole
from gankit.data import folders, loading
from gankit.detect import inputs, perturb, store
from gankit.detect.describe import condition, describe_fakes
from gankit.detect.methods import restore
from gankit.detect.roc import plot_roc
from gankit.detect.scores import detection_metrics, labels_for, roc_points
from gankit.errors import GankitError
from gankit.files import open_regular, regular
from gankit.inference import fake_sources
from gankit.inference.outputs import check_png
from gankit.run import layout
from gankit.run.metrics_log import MetricsFile

DEFAULT_N = 5000  # real images per evaluation (as many fakes)
CAVEAT = ("scores are not calibrated for generators the detector was not trained on: rank images with them, "
          "do not read them as probabilities (`gankit detect eval` measures how far they transfer)")


@dataclass
class DetectEvaluation:
    detector: Path
    method: str
    values: dict[str, float]
    real: dict[str, Any]
    fakes: list[dict[str, Any]]
    jpeg: int | None
    blur: float | None
    roc: dict[str, list[float]]
    roc_png: Path | None = None
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "eval", "method": self.method, "real": self.real, "fakes": self.fakes,
                "jpeg": self.jpeg, "blur": self.blur, **{k: round(v, 5) for k, v in self.values.items()},
                "roc": self.roc, "time": datetime.now().isoformat(timespec="seconds")}

    def table(self) -> str:
        v, real = self.values, self.real
        fakes = "; ".join(describe_fakes(f) for f in self.fakes)
        lines = [f"detector {self.detector} ({self.method}): {real['n']} real images of {real['source']} "
                 f"({real['left_out']} it trained on left out) vs {sum(f['n'] for f in self.fakes)} fakes "
                 f"({fakes}){condition(self.jpeg, self.blur, ', ')}",
                 f"  ROC AUC            {v['auc']:.4f}",
                 f"  average precision  {v['ap']:.4f}",
                 f"  accuracy at 0.5    {v['acc']:.4f}   (real {v['real_acc']:.4f}, fake {v['fake_acc']:.4f})",
                 f"  oracle accuracy    {v['oracle_acc']:.4f}   at threshold {v['oracle_threshold']:.4g}, chosen on "
                 "these very labels: an upper bound, not a result"]
        if self.roc_png:
            lines.append(f"ROC curve: {self.roc_png}")
        return "\n".join(lines)


def evaluate_detector(detector_dir: str | Path, real: str, fakes: Sequence[str], n: int | None = None,
                      seed: int = 0, best: bool = False, jpeg: int | None = None, blur: float | None = None,
                      data_dir: str | None = None, roc: str | Path | bool = True,
                      record: bool = True) -> DetectEvaluation:
    """Measure the detector at detector_dir on up to n real images of `real` (default 5,000) and as many fakes
    from `fakes` (a run's drawn from noise seed `seed`); roc: where the ROC PNG goes (True: DETECTOR_DIR/roc.png,
    False: nowhere); record: append the result to the detector's metrics.jsonl."""
    perturb.check(jpeg, blur)
    if n is not None:
        whole(n, "-n", 2)
    checks.seed(seed)
    if not fakes:
        raise GankitError("give the fakes to measure with --fake FAKES (a run, a folder or an .npy file)")
    if roc is not True and roc:
        check_png(Path(roc), "the ROC curve")
    stored = store.read(detector_dir)
    if roc is True or record:  # it writes into the detector folder: never one inside a run, before any work
        store.check_writable(stored.path)
    detector = restore(stored.config["method"], stored.config["settings"], stored.tensors)
    data = inputs.load_real(real, stored.shape, data_dir)
    wanted = min(n or DEFAULT_N, fake_sources.MAX_IMAGES)
    index, left_out, held, notes = _reals(stored, data, real, wanted, seed)
    real_images = data.images[index.sort().values]
    fake_sets, fake_notes = _fakes(stored, fakes, len(real_images), seed, best)
    notes += fake_notes
    fake_images = torch.cat([f.images for f in fake_sets])
    real_images = real_images[:len(fake_images)]  # as many real as fake images
    labels = labels_for(len(real_images), len(fake_images))
    scores = detector.scores(perturb.perturb(torch.cat([real_images, fake_images]), jpeg, blur)).numpy()
    result = DetectEvaluation(stored.path, stored.config["method"], detection_metrics(labels, scores),
                              {"source": real, "n": len(real_images), "left_out": left_out, **held},
                              [f.source for f in fake_sets], jpeg, blur, roc_points(labels, scores), notes=notes)
    if roc:
        result.roc_png = stored.path / layout.ROC if roc is True else Path(roc)
        label = "; ".join(describe_fakes(f, short=True) for f in result.fakes) + condition(jpeg, blur, ", ")
        plot_roc([(label, result.to_dict())], result.roc_png, f"{stored.path.name} ({result.method})")  # atomic
    if record:
        try:
            MetricsFile(stored.path / layout.METRICS).append(result.to_dict())
        except OSError as exc:  # a read-only detector: the numbers are still printed
            notes.append(f"not recorded in {stored.path / layout.METRICS}: {exc.strerror or exc}")
    return result


def _reals(stored: store.Stored, data: loading.ImageData, real: str, n: int,
           seed: int) -> tuple[torch.Tensor, int, dict[str, Any], list[str]]:
    """(indices of up to n real images of `real` that the detector, or its run, never trained on; how many were
    left out; {"held_out": True} when they are its run's held-out images; notes). A discriminator detector of a
    run trained with holdout > 0 takes exactly the run's held-out images (the trainer skipped them: D never saw
    them) wherever `real` holds them; of another source, any image the run did not train on."""
    seen, held = stored.hashes("real"), stored.hashes("held")
    if len(held):
        index, left_out = inputs.unseen(data.images, seen, n, seed, only=held)
        if len(index):
            holdout = stored.config["settings"].get("run_config", {}).get("holdout", 0)
            return index, left_out, {"held_out": True}, [
                f"the {len(index)} real images are its run's held-out images (holdout={holdout:g}): real "
                "pictures its D never saw"]
    index, left_out = inputs.unseen(data.images, seen, n, seed)
    hint = _holdout_hint(stored) if not len(held) else ""
    if len(index) == 0:
        raise GankitError(f"every real image of {real} was used to train {stored.path} (or its run): evaluate "
                          f"on real images it never saw{hint}")
    notes = [f"{left_out} real images of {real} trained its run's D and were left out{hint}"] if hint and left_out \
        else []
    return index, left_out, {}, notes


def _holdout_hint(stored: store.Stored) -> str:
    """For a discriminator detector without held-out images: how its run could have had some."""
    if stored.config["method"] != "discriminator":
        return ""
    run_config = stored.config["settings"].get("run_config", {})
    if run_config.get("holdout"):
        return (f"; its run holds out {run_config['holdout']:g} of its images, which this detector predates: make "
                f"it again (`gankit detect train --method discriminator --run {stored.config['settings'].get('run')}"
                "`) to evaluate on them")
    return ("; a run trained with `--set holdout=0.1` keeps real images from D (never trained on), and its "
            "discriminator detector is then evaluated on exactly those")


def _fakes(stored: store.Stored, fakes: Sequence[str], n: int, seed: int,
           best: bool) -> tuple[list[fake_sources.Images], list[str]]:
    """The fakes (n shared between the FAKES given) less any the detector was trained on."""
    shares = [n // len(fakes) + (i < n % len(fakes)) for i in range(len(fakes))]
    sets, notes = [], []
    for path, share in zip(fakes, shares):
        found = fake_sources.load_fakes(path, max(share, 1), stored.shape, seed, best)
        keep, seen = inputs.unseen(found.images, stored.hashes("fake"), len(found.images), seed)
        if len(keep) == 0:
            raise GankitError(f"every fake from {path} was used to train {stored.path}: draw others (a run's with "
                              "another --seed, `gankit generate --seed`)")
        if seen:
            notes.append(f"{seen} fakes from {path} trained the detector and were left out")
        found.images = found.images[keep.sort().values]
        found.source["n"] = len(found.images)
        sets.append(found)
    return sets, notes


class FileScores(list):
    """[(file, P(generated)), ...] as `score_files` returns them; `resized`: {file: (width, height)} of the
    pictures resized to the detector's size, and `notes`: that in words (for the CLI)."""

    def __init__(self, rows: list[tuple[str, float]], resized: dict[str, tuple[int, int]], size: int):
        super().__init__(rows)
        self.resized = resized
        self.notes = [_resized_note(resized, size)] if resized else []


def score_files(detector_dir: str | Path, files: Sequence[str | Path], resize: bool = False) -> FileScores:
    """(file, P(generated)) for image files at the detector's size; with resize=True a picture of another size
    is resized first (the short side to the detector's, then the central square, as folders are read) and
    listed in the result's `resized`. Not calibrated for generators the detector was not trained on (CAVEAT)."""
    stored = store.read(detector_dir)
    detector = restore(stored.config["method"], stored.config["settings"], stored.tensors)
    size = stored.shape[1]
    images, resized = [], {}
    for file in files:
        path = Path(file)
        found = _picture_size(path) if regular(path) else None  # a FIFO or a folder: one line saying so
        image = None
        if found is not None and found != (size, size):
            if not resize:
                raise GankitError(f"{file} is {found[0]}x{found[1]} where the detector takes {size}x{size} pictures: "
                                  "they are judged pixel for pixel, so never resized unless asked; --resize resizes "
                                  f"them (short side to {size}, then the central square; nothing was scored)")
            image = folders.read_image(path, size)  # transforms.resize_crop of the decoded picture
            if image is not None:
                image = loading.fit(image.unsqueeze(0), size, stored.shape[0])[0]
                resized[str(file)] = found
        elif found is not None:
            image = fake_sources.read_native(path, stored.shape)
        if image is None:
            raise GankitError(f"cannot read {file}: {'not an image file' if regular(path) else 'no such file'} "
                              "(nothing was scored)")
        images.append(image)
    scores = detector.scores(torch.stack(images)) if images else torch.zeros(0)
    rows = [(str(f), float(s)) for f, s in zip(files, np.asarray(scores, dtype=np.float64))]
    return FileScores(rows, resized, size)


def _picture_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of an image file from its header, or None when Pillow cannot open it."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size is judged below, in one line, not by Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with open_regular(path) as fh, Image.open(fh) as img:  # never a wait on a FIFO (gankit.files)
                size = img.size
    except Image.DecompressionBombError:
        size = (0, 0)  # more than twice MAX_IMAGE_PIXELS: Pillow does not even say how many
    except Exception:  # noqa: BLE001 - anything Pillow cannot open is an unreadable file
        return None
    if not 0 < size[0] * size[1] <= Image.MAX_IMAGE_PIXELS:
        declared = f"{size[0]}x{size[1]}" if size[0] else f"over {2 * Image.MAX_IMAGE_PIXELS:,}"
        raise GankitError(f"{path} declares {declared} pixels: more than the {Image.MAX_IMAGE_PIXELS:,} gankit "
                          "decodes (nothing was scored)")
    return size


def _resized_note(resized: dict[str, tuple[int, int]], size: int) -> str:
    """"resized 3 picture(s) from 40x40 and 1 from 64x48 to 28x28 ...": the pictures counted by native size."""
    counts: dict[tuple[int, int], int] = {}
    for found in resized.values():
        counts[found] = counts.get(found, 0) + 1
    parts = [f"{k} from {w}x{h}" for (w, h), k in sorted(counts.items(), key=lambda item: -item[1])]
    parts[0] = parts[0].replace(" from", " picture(s) from", 1)
    return (f"resized {' and '.join(parts)} to {size}x{size} (short side, then the central square): resizing "
            "can erase the traces a detector looks for")
