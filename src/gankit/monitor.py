"""What training watches besides the losses: quality evaluations, the best generator, early stopping, health.

- Quality: every `eval_every` epochs the generator (eval mode) draws `eval_samples` images that are measured
  against the cached real reference (FD, KID, precision/recall, coverage); the real-vs-real floor at the
  same sample size is measured once. The lowest FD so far keeps its generator in best.safetensors.
- Early stopping: stop when FD has not improved for `early_stop` evaluations.
- Health: a discriminator that wins too easily, mode collapse, divergence (NaN/inf). Each finding is a
  warning line, a TensorBoard text entry and a metrics.jsonl record, and names a remedy.
"""

from __future__ import annotations

import math
import sys
from dataclasses import asdict, dataclass, replace
from typing import Any

import torch

from . import evaluator as ev
from . import metrics
from .errors import GankitError
from .models import class_labels, eval_mode
from .sampling import sample

# A discriminator "wins too easily" when, over the last WINDOW steps, D(x) averages above D_REAL_HIGH and
# D(G(z)) below D_FAKE_LOW while G's loss is climbing.
WINDOW, D_REAL_HIGH, D_FAKE_LOW = 100, 0.9, 0.1
COLLAPSE_SPREAD = 0.5  # fake feature spread below half the real one
COLLAPSE_COVERAGE = 0.6  # fewer than 60% of the classes hold >= 5% of the fakes
WARMUP_EVALS = 3  # absolute collapse thresholds apply from this evaluation on

REMEDIES = {
    "d_wins": "try --set label_smoothing=0.1, a lower D learning rate, or another loss",
    "collapse": "try --set label_smoothing=0.1, a lower learning rate, or another loss; keep best.safetensors",
    "divergence": "lower the learning rate or try another loss; resume from the last checkpoint",
}


class Diverged(GankitError):
    """A loss became NaN or infinite: training stops and the last good checkpoint is kept."""


@dataclass
class Finding:
    kind: str
    epoch: int
    step: int
    message: str

    def line(self) -> str:
        return f"{self.message} (epoch {self.epoch}, step {self.step}); {REMEDIES[self.kind]}"


class Health:
    """Looks at the per-step scalars and at each evaluation; returns each problem once while it lasts."""

    def __init__(self, judge_d: bool = True):
        self.judge_d = judge_d  # D(x)/D(G(z)) are probabilities (bce); other losses' raw scores are not judged
        self.history: list[tuple[float, float, float]] = []  # (D(x), D(G(z)), loss_G) per step
        self.active: set[str] = set()
        self.findings: list[Finding] = []

    def _flag(self, kind: str, on: bool, epoch: int, step: int, message: str) -> list[Finding]:
        """A new finding when `on` turns true; the flag is lowered when it turns false."""
        if not on:
            self.active.discard(kind)
            return []
        if kind in self.active:
            return []
        self.active.add(kind)
        self.findings.append(Finding(kind, epoch, step, message))
        return [self.findings[-1]]

    def on_step(self, epoch: int, step: int, values: dict[str, float]) -> list[Finding]:
        """Divergence (a non-finite value: the caller stops training) and a discriminator that wins too easily."""
        if not all(math.isfinite(v) for v in values.values()):
            bad = ", ".join(k for k, v in values.items() if not math.isfinite(v))
            self.findings.append(Finding("divergence", epoch, step, f"training diverged: {bad} is not finite"))
            return [self.findings[-1]]
        self.history.append((values["D(x)"], values["D(G(z))"], values["loss_G"]))
        if len(self.history) > 2 * WINDOW:
            del self.history[: len(self.history) - 2 * WINDOW]
        if not (self.judge_d and len(self.history) >= 2 * WINDOW):
            return []
        recent, before = self.history[-WINDOW:], self.history[:WINDOW]
        real = sum(r[0] for r in recent) / WINDOW
        fake = sum(r[1] for r in recent) / WINDOW
        climbing = sum(r[2] for r in recent) > sum(r[2] for r in before)
        return self._flag("d_wins", real > D_REAL_HIGH and fake < D_FAKE_LOW and climbing, epoch, step,
                          f"the discriminator wins too easily: D(x) {real:.2f}, D(G(z)) {fake:.2f} over the "
                          f"last {WINDOW} steps while G's loss climbs")

    def on_eval(self, epoch: int, step: int, values: dict, num_classes: int, best_covered: int | None,
                evaluations: int = WARMUP_EVALS) -> list[Finding]:
        """Collapse: coverage fell by 2+ classes from its best, or (after the first WARMUP_EVALS evaluations,
        when an untrained generator is expected to lack variety) the spread or coverage is too low."""
        reasons = []
        warm = evaluations >= WARMUP_EVALS
        if warm and values.get("spread", 1.0) < COLLAPSE_SPREAD:
            reasons.append(f"the fakes' feature spread is {values['spread']:.2f} of the real one")
        covered = values.get("classes_covered")
        if covered is not None and num_classes:
            if warm and covered < COLLAPSE_COVERAGE * num_classes:
                reasons.append(f"only {covered} of {num_classes} classes hold >= 5% of the fakes")
            elif best_covered is not None and covered <= best_covered - 2:
                reasons.append(f"class coverage dropped from {best_covered} to {covered}")
        return self._flag("collapse", bool(reasons), epoch, step, "mode collapse: " + "; ".join(reasons))


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
        """A checkpoint's quality record (keys of this class only), or GankitError."""
        try:
            return cls(**state)
        except TypeError:
            raise GankitError(f"its quality record holds keys gankit does not write: {', '.join(sorted(state))}") from None


class Quality:
    """Periodic evaluation of the generator against the cached real reference, best tracking, early stop."""

    def __init__(self, evaluator, reference, n: int, patience: int):
        self.evaluator, self.reference = evaluator, reference
        self.n, self.patience = n, patience
        self.floor: dict | None = None
        self.fingerprint = "" if evaluator is None else ev.fingerprint(evaluator)
        self.state = QualityState(evaluator=self.fingerprint)

    @classmethod
    def for_data(cls, data, evaluator_path: str, n: int, patience: int, progress: bool) -> "Quality":
        """The cached (or newly trained) evaluator for `data` and the cached real reference."""
        evaluator = ev.evaluator_for(data, evaluator_path or None, progress=progress)
        reference = ev.reference_for(data, evaluator)
        if metrics.comparable_n(reference, n) < n and progress:
            print(f"gankit: note: evaluations draw {metrics.comparable_n(reference, n)} samples, not eval_samples={n}:"
                  " the real-vs-real floor has only that many held-out images", file=sys.stderr)
        return cls(evaluator, reference, metrics.comparable_n(reference, n), patience)

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
                                       self.evaluator, self.reference, self.n, kid_subsets=10, labels=labels)
        except ValueError:  # non-finite images: the worst possible FD
            return {"fd": float("inf")}

    def update(self, values: dict, epoch: int) -> tuple[bool, str | None]:
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
