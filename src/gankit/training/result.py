"""What a finished training session hands back: `RunResult` (its .summary() is what `gankit train` prints)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from gankit.run import layout


@dataclass
class RunResult:
    run_dir: Path
    epochs: int
    steps: int
    seconds: float
    images_per_s: float
    last: dict[str, float]
    stopped: str | None = None  # why training ended before the last epoch
    best_fd: float | None = None
    best_epoch: int = 0
    health: list[str] = field(default_factory=list)

    def summary(self) -> str:
        last = ", ".join(f"{k} {v:.3f}" for k, v in self.last.items())
        lines = [f"trained {self.epochs} epochs ({self.steps} steps) in {self.seconds:.1f} s, "
                 f"{self.images_per_s:.0f} images/s; last: {last}; run: {self.run_dir}"]
        if self.stopped:
            lines.append(self.stopped)
        if self.best_fd is not None:
            lines.append(f"best FD {self.best_fd:.3f} at epoch {self.best_epoch}: {self.run_dir / layout.BEST}")
        lines += [f"health: {h}" for h in self.health] or ["health: no problems found"]
        return "\n".join(lines)
