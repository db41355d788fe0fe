"""How long a run trains and how far it is: the step budget (epochs, or kimg: thousands of images shown),
the time limit, the estimate said once from the first steps, and the whole run's progress beside the bar.

    budget = Budget(cfg, steps_per_epoch, step, epoch)  # at the start of fit()
    budget.done(step)        # the step budget is spent (the last epoch of a kimg budget ends part way)
    budget.out_of_time()     # time_limit passed (checked before every step: it ends within one step)
    budget.tick(step)        # once, after the first steps: "~12 min for the whole run on this machine ..."
    budget.postfix(step)     # {"run": "34%", "left": "6:12"} for the epoch bar
"""

from __future__ import annotations

import math
import time

from gankit.config import Config

WARMUP = 3  # steps not timed for the estimate (lazy initialisation, first allocations)
TIMED = 20  # steps timed after the warm-up before the estimate is said


def epochs_for(cfg: Config, steps_per_epoch: int, step: int = 0, epoch: int = 0) -> int:
    """The epochs a kimg budget spans (the last one may end part way); cfg.epochs without one. A resumed run
    counts from its checkpoint's step and epoch: an epoch it ended part way (at a budget or the time limit)
    counts as done, and the steps left of the budget need epochs of their own."""
    if not cfg.kimg:
        return cfg.epochs
    return epoch + max(1, math.ceil((budget_steps(cfg) - step) / max(1, steps_per_epoch)))


def budget_steps(cfg: Config) -> int:
    """Steps of a kimg budget: kimg thousand images in batches of batch_size (rounded up)."""
    return math.ceil(cfg.kimg * 1000 / cfg.batch_size)


def duration(seconds: float) -> str:
    """A rough duration in words: 45 s, 12 min, 1.5 h."""
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def clock(seconds: float) -> str:
    """h:mm:ss or m:ss."""
    seconds = max(0, int(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


class Budget:
    """One training session's budget and clock (a resumed run starts a new one at its checkpoint's step)."""

    def __init__(self, cfg: Config, steps_per_epoch: int, step: int, epoch: int):
        self.limit = cfg.time_limit
        # the step training ends at (a resumed run: counted from its checkpoint's step and epoch)
        self.last = max(budget_steps(cfg), step) if cfg.kimg else step + (cfg.epochs - epoch) * steps_per_epoch
        self.first = step
        self.start = time.perf_counter()
        self.timed_from: tuple[int, float] | None = None
        self.told = False

    def done(self, step: int) -> bool:
        return step >= self.last

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def out_of_time(self) -> bool:
        return bool(self.limit) and self.elapsed() > self.limit

    def tick(self, step: int, evaluations: int = 0) -> str | None:
        """The whole run's estimate, once, when the first steps have been timed; None before and after."""
        if self.told:
            return None
        if step - self.first == WARMUP:
            self.timed_from = (step, time.perf_counter())
        if self.timed_from is None or step - self.timed_from[0] < TIMED:
            return None
        self.told = True
        rate = (step - self.timed_from[0]) / max(time.perf_counter() - self.timed_from[1], 1e-9)
        left = (self.last - step) / rate
        total = self.elapsed() + left
        plus = f", plus {evaluations} evaluation(s)" if evaluations else ""
        line = (f"estimate: ~{duration(total)} for the whole run on this machine ({self.last - self.first} steps "
                f"at {rate:.1f} steps/s{plus})")
        if self.limit and total > self.limit:
            line += f"; time_limit={self.limit:g} ends it after ~{duration(self.limit)}"
        return line

    def postfix(self, step: int) -> dict[str, str]:
        """The whole run beside the epoch bar: its share done and the time left at the pace so far (every
        step, evaluation and checkpoint of this session included)."""
        span = max(1, self.last - self.first)
        done = step - self.first
        out = {"run": f"{100 * done / span:.0f}%"}
        if done > WARMUP:
            left = self.elapsed() / done * (self.last - step)
            if self.limit:
                left = min(left, max(0.0, self.limit - self.elapsed()))
            out["left"] = clock(left)
        return out
