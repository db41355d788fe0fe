"""An exponential moving average of the generator's weights: the generator that is sampled and exported.

ema <- decay * ema + (1 - decay) * weights after every G step, with the decay ramped up early on as
min(decay, (1 + updates) / (10 + updates)) so a short run is not dominated by its untrained first weights.

BatchNorm: running statistics are not weights, and the statistics of the live generator do not match the
averaged weights. Before the EMA generator is used (grid, evaluation, export) its BatchNorm statistics are
recomputed from scratch by running it in train mode on fresh noise with cumulative averaging
(`recalibrate`), so eval-mode sampling sees the statistics of the averaged network itself.
"""

from __future__ import annotations

import copy
from typing import Callable

import torch
from torch import nn

from gankit.models.registry import run


class EMA:
    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.updates = 0
        self._params = list(self.model.parameters())
        self._sources = [p.detach() for p in model.parameters()]  # the live weights, updated in place

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def accumulate(self) -> None:
        """One step towards the live model's current weights."""
        decay = self.current_decay()
        torch._foreach_lerp_(self._params, self._sources, 1.0 - decay)
        self.updates += 1

    @torch.no_grad()
    def recalibrate(self, draw: Callable[[int], tuple], batches: int = 4, batch_size: int = 256) -> None:
        """Recompute BatchNorm running statistics for the averaged weights; draw(n) -> (noise, labels or None)."""
        norms = [m for m in self.model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if not norms:
            return
        saved = [m.momentum for m in norms]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the calibration batches
        self.model.train()
        try:
            for _ in range(batches):
                run(self.model, *draw(batch_size))
        finally:
            self.model.eval()
            for m, momentum in zip(norms, saved):
                m.momentum = momentum

    def state_dict(self) -> dict:
        return {"model": self.model.state_dict(), "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.model.load_state_dict(state["model"])
        self.updates = int(state["updates"])
