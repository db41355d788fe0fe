"""What the benchmarks share: the machine's description, and a Trainer built with the tutorials' exact flags.

Each benchmark prints JSON with `machine()` in it; profile_step, fusion and throughput time steps of
`build(preset, sets)`. Nothing here imports another benchmark (they all import this).
"""

from __future__ import annotations

import os
import platform
import tempfile
from pathlib import Path

import torch
from torch.profiler import record_function

TUTORIAL = {"dcgan": {"rotation": 20, "ema": 0, "d_channels": "16,32,64", "conditional": False, "eval_every": 0},
            "simple-gan": {"ema": 0, "conditional": False, "eval_every": 0}}


def machine() -> dict:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None}


def build(preset: str, sets: dict):
    from gankit import config
    from gankit.training.trainer import Trainer

    cfg = config.resolve(preset, sets={**TUTORIAL.get(preset, {}), **sets}, epochs=1, device="cpu")
    run = Path(tempfile.mkdtemp()) / "run"
    run.mkdir()
    return Trainer(cfg, run, progress=False)


def steps(trainer, count: int, label: bool = False):
    done = 0
    while done < count:
        for real, y in trainer.batches.epoch(done):
            if label:
                with record_function("step"):
                    trainer.train_step(real, y)
            else:
                trainer.train_step(real, y)
            done += 1
            if done == count:
                return
