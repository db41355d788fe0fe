"""Health: what training watches besides the losses, and what it says about it.

A discriminator that wins too easily, mode collapse (feature spread, class coverage), divergence (NaN/inf).
Each finding is a warning line, a TensorBoard text entry and a metrics.jsonl record, and names a remedy.
Quality numbers come from gankit.quality.tracking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gankit.errors import GankitError

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
