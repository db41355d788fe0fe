"""BatchNorm + activation fused by torch.compile (inductor), against eager, in gankit's dcgan step on this CPU.

The profile (benchmarks/profile_step.py) puts BatchNorm forward + backward and the activations at ~10% of the
dcgan step. Inductor can fuse each normalization with its activation (forward and backward) into one loop
over the tensor. This swaps each BatchNorm2d + ReLU/LeakyReLU pair of G and D for one compiled module (the same
parameters and buffers) and times steady steps of the tutorial-exact dcgan step both ways, plus the compile
time paid before the first step. Prints one JSON object.

Usage: python benchmarks/fusion.py [--steps 30]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import build, machine, steps  # noqa: E402


class NormAct(nn.Module):
    def __init__(self, norm: nn.Module, act: nn.Module):
        super().__init__()
        self.norm, self.act = norm, act

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(x))


def fuse(seq: nn.Sequential) -> int:
    """Each BatchNorm2d followed by an activation in seq becomes one compiled NormAct (and an Identity)."""
    count = 0
    for i in range(len(seq) - 1):
        if isinstance(seq[i], nn.BatchNorm2d) and isinstance(seq[i + 1], (nn.ReLU, nn.LeakyReLU)):
            seq[i + 1].inplace = False
            seq[i] = torch.compile(NormAct(seq[i], seq[i + 1]), dynamic=False)
            seq[i + 1] = nn.Identity()
            count += 1
    return count


def timed(trainer, count: int) -> float:
    """Milliseconds per step over `count` steady steps."""
    start = time.perf_counter()
    steps(trainer, count)
    return (time.perf_counter() - start) / count * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = 64  # one NormAct code object, compiled for each pair's shapes
    torch._dynamo.config.recompile_limit = 64
    out = {"benchmark": "fusion", "machine": machine(), "preset": "dcgan (tutorial-exact flags)", "ms_per_step": {}}
    eager = build("dcgan", {})
    steps(eager, 3)
    first = timed(eager, args.steps)
    fused = build("dcgan", {})
    out["fused_pairs"] = fuse(fused.G.net) + fuse(fused.D.body)
    start = time.perf_counter()
    steps(fused, 3)  # compiles, forward and backward
    out["compile_s"] = round(time.perf_counter() - start, 1)
    out["ms_per_step"]["fused_bn_act"] = round(timed(fused, args.steps), 1)
    out["ms_per_step"]["eager"] = round(min(first, timed(eager, args.steps)), 1)  # eager before and after
    out["fused_over_eager"] = round(out["ms_per_step"]["fused_bn_act"] / out["ms_per_step"]["eager"], 3)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
