"""gankit: train, resume, sample and inspect GANs on images.

From Python (each is the library function behind the command of the same name):

    gankit.train(preset, run_dir, **settings) -> RunResult    train a new run
    gankit.resume(run_dir, **changes) -> RunResult            continue one from its checkpoint
    gankit.load(run_dir, best=False, device="cpu") -> Generator   a trained generator: .sample(n), or a Module
    gankit.generate(run_dir, n, out, ...) -> Path             write samples as a grid, an array or a folder
    gankit.evaluate(run_dir, n=None, ...) -> Evaluation       FD, KID, precision/recall against the data
    gankit.export(run_dir, out=None, format="onnx") -> Path   the generator for other runtimes

`import gankit` imports no torch: each name is imported on first use (PEP 562).
"""

from __future__ import annotations

import importlib
import sys
import types

from .errors import GankitError

__version__ = "0.1.0"

# name -> the module that defines it. train, generate, evaluate and export are also module names: the package
# attribute is the function, also after `import gankit.train` (see _Package).
_LAZY = {"train": "train", "resume": "train", "load": "pretrained", "Generator": "pretrained",
         "generate": "generate", "evaluate": "evaluate", "export": "export"}
__all__ = ["GankitError", "__version__", *_LAZY]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value  # the next lookup finds it without this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


class _Package(types.ModuleType):
    """The package's own type: importing the submodule gankit.train (or generate, evaluate, export) binds the
    module as the package attribute of that name, and this keeps the function there instead. The submodule
    stays importable (`from gankit.train import resume`, `import gankit.train`): it lives in sys.modules."""

    def __setattr__(self, name: str, value) -> None:
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
