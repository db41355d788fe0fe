"""gankit: train, resume, sample and inspect GANs on images.

From Python (each is the library function behind the command of the same name):

    gankit.train(preset, run_dir, **settings) -> RunResult    train a new run
    gankit.resume(run_dir, **changes) -> RunResult            continue one from its checkpoint
    gankit.load(run_dir, best=False, device="cpu") -> TrainedGenerator   .sample(n), or a Module
    gankit.generate(run_dir, n, out, ...) -> Path             write samples as a grid, an array or a folder
    gankit.evaluate(run_dir, n=None, ...) -> Evaluation       FD, KID, precision/recall against the data
    gankit.evaluate_fakes(fakes, real, ...) -> Evaluation     the same for images any tool made
    gankit.export(run_dir, out=None, format="onnx") -> Path   the generator for other runtimes

`import gankit` imports no torch: each name is imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib

from gankit.errors import GankitError

__version__ = "0.1.0"

# name -> the module that defines it (no module at the top is named like one of these functions, so
# `import gankit.inference.generate` leaves gankit.generate the function)
_LAZY = {"train": "gankit.training.launch", "resume": "gankit.training.launch", "load": "gankit.inference.trained",
         "TrainedGenerator": "gankit.inference.trained", "generate": "gankit.inference.generate",
         "evaluate": "gankit.quality.evaluate", "evaluate_fakes": "gankit.quality.evaluate",
         "export": "gankit.inference.export"}
_OLD_NAMES = {"Generator": "TrainedGenerator"}  # what gankit.load returned was called before the layout changed
__all__ = ["GankitError", "__version__", *_LAZY, *_OLD_NAMES]


def __getattr__(name: str):
    wanted = _OLD_NAMES.get(name, name)
    if wanted not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_LAZY[wanted]), wanted)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY) | set(_OLD_NAMES))
