"""Quality while training: evaluations every `eval_every` epochs, the best generator, early stopping.

- Every `eval_every` epochs the generator (eval mode) draws `eval_samples` images that are measured against
  the cached real reference (FD, KID, precision/recall, coverage); the real-vs-real floor at the same sample
  size is measured once. The lowest FD so far keeps its generator in best.safetensors.
- Early stopping: stop when FD has not improved for `early_stop` evaluations.
The health checks that read these numbers (mode collapse) are gankit.training.health.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from gankit import console
from gankit.checks import MAX_EPOCH, Field, expect_fields
from gankit.inference.sampling import sample
from gankit.models.registry import class_labels, eval_mode
from gankit.quality import evaluator as ev
from gankit.quality import metrics


@dataclass
class QualityState:
    """What the checkpoint carries so that a resumed run keeps its best FD and its early-stop count."""

    best_fd: float | None = None
    best_epoch: int = 0
    best_covered: int | None = None
    since_best: int = 0
    evaluations: int = 0
    evaluator: str = ""  # fingerprint of the evaluator that measured best_fd ("" in runs older than it)

    @classmethod
    def parse(cls, state: dict[str, Any]) -> "QualityState":
        """A checkpoint's quality record (keys of this class only, each of its type and range), or GankitError."""
        expect_fields(state, QUALITY_FIELDS, "its quality record", extra=False)
        return cls(**state)


QUALITY_FIELDS = {  # every key may be absent (a record of an older gankit): the default stands in
    "best_fd": Field(float, 0, None, optional=True, null=True, infinite=True),
    "best_epoch": Field(int, 0, MAX_EPOCH, optional=True),
    "best_covered": Field(int, 0, None, optional=True, null=True),
    "since_best": Field(int, 0, MAX_EPOCH, optional=True), "evaluations": Field(int, 0, MAX_EPOCH, optional=True),
    "evaluator": Field(str, 0, 200, optional=True)}


class Quality:
    """Periodic evaluation of the generator against the cached real reference, best tracking, early stop."""

    def __init__(self, evaluator, reference, n: int, patience: int):
        self.evaluator, self.reference = evaluator, reference
        self.n, self.patience = n, patience
        self.floor: dict | None = None
        self.held_out = 0
        self.fingerprint = "" if evaluator is None else ev.fingerprint(evaluator)
        self.state = QualityState(evaluator=self.fingerprint)

    @classmethod
    def for_data(cls, data, evaluator_path: str, n: int, patience: int, progress: bool,
                 kind: str = "auto", held_out: int = 0) -> "Quality":
        """The cached (or newly trained) evaluator for `data` (of `kind`) and the cached real reference."""
        evaluator = ev.evaluator_for(data, evaluator_path or None, progress=progress, kind=kind)
        reference = ev.reference_for(data, evaluator)
        if metrics.comparable_n(reference, n) < n and progress:
            console.note(f"evaluations draw {metrics.comparable_n(reference, n)} samples, not eval_samples={n}: "
                         "the real-vs-real floor has only that many held-out images")
        quality = cls(evaluator, reference, metrics.comparable_n(reference, n), patience)
        quality.held_out = held_out  # the first images of half B, never trained on (C_T)
        return quality

    def load_state(self, state: dict[str, Any] | None) -> str | None:
        """Carry a checkpoint's best FD and early-stop count on; returns a note when they cannot be carried:
        a best FD measured by another evaluator (retrained, replaced, or a gankit version ago) is in another
        feature space, so the best generator is chosen afresh from the next evaluation on."""
        if not state:
            return None
        saved = QualityState.parse(state)
        if saved.evaluator == self.fingerprint or saved.best_fd is None:
            self.state = replace(saved, evaluator=self.fingerprint)
            return None
        self.state = QualityState(evaluations=saved.evaluations, evaluator=self.fingerprint)
        which = ("may have been measured by another evaluator (the checkpoint predates the record of which)"
                 if not saved.evaluator else "was measured by another evaluator")
        return (f"this run's best FD ({saved.best_fd:.3f} at epoch {saved.best_epoch}) {which}, whose values do "
                "not compare with this one's: the best generator is chosen afresh from the next evaluation on")

    def state_dict(self) -> dict[str, Any]:
        return asdict(self.state)

    def measure(self, generator: torch.nn.Module, z_dim: int, seed: int, device: torch.device,
                num_classes: int = 0) -> dict:
        if self.floor is None:
            self.floor = metrics.floor(self.reference, self.n, kid_subsets=10)
        labels = class_labels(self.n, num_classes, prior=self.reference.class_prior)  # the data's class mix
        try:
            with eval_mode(generator):
                return metrics.measure(lambda n: sample(generator, n, z_dim, seed, device=device, labels=labels),
                                       self.evaluator, self.reference, self.n, kid_subsets=10, labels=labels,
                                       held_out=self.held_out)
        except ValueError:  # non-finite images: the worst possible FD
            return {"fd": float("inf")}

    def record(self, values: dict, epoch: int) -> tuple[bool, str | None]:
        """(is this the best FD so far, why to stop now or None)."""
        s = self.state
        s.evaluations += 1
        improved = metrics.is_better(values["fd"], s.best_fd)
        if improved:
            s.best_fd, s.best_epoch, s.since_best = values["fd"], epoch, 0
            s.best_covered = values.get("classes_covered", s.best_covered)
        else:
            s.since_best += 1
        stop = None
        if self.patience and s.since_best >= self.patience:
            stop = (f"early stop: FD has not improved for {s.since_best} evaluations "
                    f"(best {s.best_fd:.3f} at epoch {s.best_epoch})")
        return improved, stop
