"""What each entry point imports: help and `import gankit` without torch; no command imports torchvision,
tensorboard, matplotlib or torchmetrics before it needs them. Each check runs in a fresh interpreter."""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torchvision", "torch.utils.tensorboard", "tensorboard", "matplotlib", "torchmetrics", "torch._dynamo")


def _modules_after(code: str) -> set[str]:
    """The modules loaded once `code` has run in a new interpreter (it may exit through SystemExit)."""
    script = ("import sys\ntry:\n" + "".join(f"    {line}\n" for line in code.splitlines())
              + "except SystemExit:\n    pass\nprint('\\n'.join(sorted(sys.modules)), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return set(done.stderr.split())


def _loaded(modules: set[str], names) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


@pytest.mark.parametrize("argv", [[], ["--help"], ["train", "--help"], ["generate", "--help"], ["export", "--help"],
                                  ["classifier", "train", "--help"], ["--version"], ["no-such-command"]])
def test_help_and_usage_errors_import_no_torch(argv):
    modules = _modules_after(f"from gankit.cli import main\nmain({argv!r})")
    assert "gankit.cli" in modules and _loaded(modules, ("torch", "numpy")) == []
