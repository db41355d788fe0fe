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


COMMANDS = [["train"], ["generate"], ["evaluate"], ["export"], ["report"], ["classifier"], ["classifier", "train"],
            ["classifier", "predict"], ["data"]]


@pytest.mark.parametrize("argv", [[], ["--help"], ["--version"], ["no-such-command"], ["generate"],
                                  *[[*command, "--help"] for command in COMMANDS]])
def test_help_and_usage_errors_import_no_torch(argv):
    modules = _modules_after(f"from gankit.cli import main\nmain({argv!r})")
    assert "gankit.cli" in modules and _loaded(modules, ("torch", "numpy")) == []


def _command(argv: list[str]) -> set[str]:
    return _modules_after(f"from gankit.cli import main\nassert main({argv!r}) in (0, 2)")


def test_generate_imports_nothing_heavy(mlp_run, tmp_path):
    modules = _command(["generate", str(mlp_run), "-n", "16", "-o", str(tmp_path / "x.png")])  # a grid
    assert (tmp_path / "x.png").exists() and "torch" in modules
    assert _loaded(modules, HEAVY) == []


def test_train_imports_tensorboard_and_matplotlib_only_to_write_them(tmp_path):
    # a run that stops at its data has written nothing: none of them
    assert _loaded(_command(["train", "--data", f"folder:{tmp_path / 'none'}", "--out", str(tmp_path / "r")]),
                   HEAVY) == []
    modules = _command(["train", "--preset", "simple-gan", "--epochs", "1", "--set", "eval_every=0", "--set",
                        "subset=64", "--out", str(tmp_path / "run"), "--no-progress"])
    assert (tmp_path / "run" / "loss_curves.png").is_file() and list((tmp_path / "run" / "tb").iterdir())
    # no torch._dynamo either: torch.optim would import it on its first use (gankit.training.adam says why not)
    assert _loaded(modules, ("torchvision", "torchmetrics", "torch._dynamo")) == []


def test_describing_data_imports_nothing_heavy(tmp_path):
    assert _loaded(_command(["data", "mnist5k", "-n", "4", "-o", str(tmp_path / "d.png")]), HEAVY) == []
