"""What a run records: RUN_DIR/metrics.jsonl (one owner, `MetricsFile`) and the training log on top of it.

metrics.jsonl holds one JSON object per line, each with a "kind":
  train   one per step: epoch, step, loss_D, loss_G, D(x), D(G(z))
  epoch   one per epoch: seconds, images_per_s
  eval    one per evaluation (source "train" during training, "evaluate" from `gankit evaluate`)
  health  one per finding: issue, message, remedy
Every module that reads or writes it goes through `MetricsFile`. A crash can leave a torn last line (the
process died inside a write): readers drop it with a note and the next append cuts it off first. A line that
is not a JSON object anywhere else, or one longer than MAX_LINE_BYTES, is damage gankit did not cause: one
clear error. Every read is one streaming pass over the file (appends read only its end).
"""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterable, Iterator

import torch

from gankit import console
from gankit.errors import GankitError
from gankit.files import Named, atomic_write_text, open_regular, own_in_place, regular

SCALARS = ("loss_D", "loss_G", "D(x)", "D(G(z))")
MAX_LINE_BYTES = 4 << 20  # gankit's records are under a few KB (a detector's ROC points included)


class MetricsFile:
    """RUN_DIR/metrics.jsonl: read (by kind), append, purge what a resumed run will log again."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    def _lines(self) -> Iterator[tuple[int, bytes, bool]]:
        """(number, line without its newline, whether it ended in one) for each line, in one streaming pass: no
        line longer than MAX_LINE_BYTES is held (one is damage: GankitError)."""
        with open_regular(self.path) as fh:
            for number in itertools.count(1):
                line = fh.readline(MAX_LINE_BYTES + 1)
                if not line:
                    return
                whole = line.endswith(b"\n")
                if len(line) - whole > MAX_LINE_BYTES:
                    raise self._too_long(f"line {number}")
                yield number, line[:-1] if whole else line, whole

    def _too_long(self, which: str) -> GankitError:
        return GankitError(f"{self.path} {which} is longer than {MAX_LINE_BYTES:,} bytes, far more than any record "
                           "gankit writes: the file is damaged; remove that line (or the file) and try again")

    def read(self, kind: str | None = None) -> list[dict[str, Any]]:
        """Every record (of one kind); a torn last line is left out with a note. Raises GankitError on damage
        before the last line, or a line over MAX_LINE_BYTES; a FIFO, a folder or a device where the file belongs
        is one line saying what it is (files.regular)."""
        if not regular(self.path):
            return []
        records = []
        for number, line, whole in self._lines():
            if not line.strip():
                continue
            record = _loads(line)
            if record is None and not whole:  # a torn last line (the process died inside a write)
                console.note(f"{self.path}: the last line is incomplete (a run was stopped while writing it); "
                             "it is ignored")
                break
            if record is None:
                raise GankitError(f"{self.path} line {number} is not a JSON record: the file is damaged; "
                                  "remove that line (or the file) and try again")
            if kind is None or record.get("kind") == kind:
                records.append(record)
        return records

    def repair(self) -> None:
        """Cut a torn last line off (so the next record starts on a line of its own); ends the file with a
        newline. Whole records are never touched; only the file's last MAX_LINE_BYTES are read."""
        own_in_place(self.path)
        if not regular(self.path):
            return
        with open_regular(self.path, update=True) as fh:
            size = fh.seek(0, os.SEEK_END)
            start = max(0, size - MAX_LINE_BYTES - 1)
            fh.seek(start)
            data = fh.read()
            if not data or data.endswith(b"\n"):
                return
            if data.rfind(b"\n") < 0 and start > 0:
                raise self._too_long("the last line")
            cut = data.rfind(b"\n") + 1
            if _loads(data[cut:]) is not None:
                fh.write(b"\n")  # a whole record that lacks only its newline
                return
            console.note(f"{self.path}: dropped an incomplete last line (a run was stopped while writing it)")
            fh.truncate(start + cut)

    def append(self, *records: dict[str, Any]) -> None:
        self.repair()
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(_lines(records))

    def purge_after(self, step: int) -> None:
        """Drop the records logged after `step` (a resumed run logs those steps again, so each appears once)."""
        if not regular(self.path):
            return
        kept = [r for r in self.read() if _step_of(r) <= step]
        atomic_write_text(self.path, _lines(kept))

    def open(self):
        """A handle for appending many records (the training log); the file is repaired first."""
        self.repair()
        return self.path.open("a", encoding="utf-8")


def _lines(records: Iterable[dict[str, Any]]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def _loads(line: bytes) -> dict[str, Any] | None:
    """A JSON object from one line of UTF-8, or None (not UTF-8, not JSON, not an object, nested too deep)."""
    try:
        record = json.loads(line.decode("utf-8"))
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None
    return record if isinstance(record, dict) else None


def _step_of(record: dict[str, Any]) -> float:
    step = record.get("step", 0)
    return step if isinstance(step, (int, float)) else 0


class QuietLog:
    """The per-step scalars, synced from the device every `every` steps and returned as rows, written nowhere:
    what a rank other than 0 keeps, so that every rank checks the same rows at the same steps."""

    def __init__(self, every: int, names: tuple[str, ...] = SCALARS):
        self.every, self.names, self.pending, self.last = every, names, [], {}

    def step(self, epoch: int, step: int, values: torch.Tensor) -> list[tuple[int, int, dict[str, float]]]:
        """Queue one step's scalars (a device tensor); returns the rows written when this fills a flush."""
        self.pending.append((epoch, step, values))
        return self.flush() if len(self.pending) >= self.every else []

    def flush(self) -> list[tuple[int, int, dict[str, float]]]:
        """Write the queued rows (one device sync for all of them) and return them as (epoch, step, values)."""
        if not self.pending:
            return []
        numbers = torch.stack([v for _, _, v in self.pending]).tolist()
        rows = [(epoch, step, dict(zip(self.names, row))) for (epoch, step, _), row in zip(self.pending, numbers)]
        self.pending.clear()
        self._write(rows)
        self.last = rows[-1][2]
        return rows

    def _write(self, rows: list[tuple[int, int, dict[str, float]]]) -> None:
        pass

    def postfix(self, **extra: str) -> dict[str, str]:
        return {**{k: f"{v:.3f}" for k, v in self.last.items()}, **extra}

    def close(self) -> None:
        self.flush()


class TrainingLog(QuietLog):
    """Per-step scalars to TensorBoard and metrics.jsonl, synced from the device every `every` steps; epoch,
    evaluation and health records; sample grids to TensorBoard. It only logs: the caller checks the values."""

    def __init__(self, run_dir: Path, every: int, metrics: str, tensorboard: str, names: tuple[str, ...] = SCALARS,
                 resume_step: int | None = None):
        """names: the per-step scalars' names; resume_step: a resumed run's checkpoint step (0 without one): what
        was logged after it is dropped."""
        from torch.utils.tensorboard import SummaryWriter  # heavy: imported when a run starts

        super().__init__(every, names)
        self.metrics = MetricsFile(run_dir / metrics)
        if resume_step is not None:
            self.metrics.purge_after(resume_step)
        self.file = Named(self.metrics.open(), self.metrics.path)  # a failed write names its file
        self.writer = Named(SummaryWriter(str(run_dir / tensorboard),
                                          purge_step=None if resume_step is None else resume_step + 1),
                            run_dir / tensorboard)
        # TensorBoard writes from a thread of its own: a full disk there is reported to the main thread on
        # its next write (one line from the CLI), so the thread's own traceback is not printed as well
        self._excepthook = threading.excepthook
        threading.excepthook = self._thread_error

    def _thread_error(self, args) -> None:
        if isinstance(args.exc_value, OSError) and "Writer" in type(args.thread).__name__:
            return
        self._excepthook(args)

    def _write(self, rows: list[tuple[int, int, dict[str, float]]]) -> None:
        for epoch, step, values in rows:
            for tag, value in values.items():
                self.writer.add_scalar(tag, value, step)
            self.file.write(json.dumps({"kind": "train", "epoch": epoch, "step": step,
                                        **{k: round(v, 6) for k, v in values.items()}}) + "\n")
        self.file.flush()

    def record(self, entry: dict[str, Any]) -> None:
        self.file.write(json.dumps(entry) + "\n")
        self.file.flush()

    def epoch(self, epoch: int, step: int, seconds: float, images_per_s: float, grid: torch.Tensor) -> None:
        self.writer.add_image("samples", grid, step)
        self.record({"kind": "epoch", "epoch": epoch, "step": step, "seconds": round(seconds, 3),
                     "images_per_s": round(images_per_s, 1)})

    def reals(self, grid: torch.Tensor) -> None:
        """The real images beside the samples in TensorBoard, once (step 0)."""
        self.writer.add_image("reals", grid, 0)

    def evaluation(self, epoch: int, step: int, values: dict, floor: dict | None, n: int,
                   evaluator: str = "") -> None:
        """One evaluation: TensorBoard scalars under eval/ (and floor/), a metrics.jsonl record that names
        the evaluator (a fingerprint prefix: values under different ones do not compare)."""
        for key, value in values.items():
            if isinstance(value, (int, float)):
                self.writer.add_scalar(f"eval/{key}", value, step)
                if floor and key in floor:
                    self.writer.add_scalar(f"floor/{key}", floor[key], step)
        self.record({"kind": "eval", "source": "train", "epoch": epoch, "step": step, "n": n, **values,
                     "floor": floor, "floor_n": n, "evaluator": evaluator})

    def health(self, finding, line: str, remedy: str) -> None:
        self.writer.add_text("health", line, finding.step)
        self.record({"kind": "health", "issue": finding.kind, "epoch": finding.epoch, "step": finding.step,
                     "message": finding.message, "remedy": remedy})

    def close(self) -> None:
        try:
            self.flush()
            self.file.close()
            self.writer.close()
        finally:
            threading.excepthook = self._excepthook

