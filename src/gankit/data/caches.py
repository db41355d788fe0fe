"""The rule for every cache entry gankit reuses (a packed folder, an evaluator, a real-feature reference): it is
checked against what it claims to be and against what the request needs before anything uses it, and an entry
that does not fit (damaged, crafted, another folder's, another shape) is removed and made again, with one line
saying so. Nothing in a cache is trusted because of its name: the name is a key, not a proof.

    entry = caches.reuse(path, "pack", load=open_it, check=lambda e: caches.mismatch(e.meta, wanted), say=say)
    if entry is None:
        ...  # make it again at path
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Callable, TypeVar

from gankit.console import one_line
from gankit.errors import GankitError
from gankit.files import regular

T = TypeVar("T")
_ABSENT = object()


def mismatch(recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """The first of `wanted`'s keys whose value the entry does not record (same value and same type: True is not
    1), in words ("its image_size is 32, not 28"); None when every one fits."""
    for key, want in wanted.items():
        have = recorded.get(key, _ABSENT) if isinstance(recorded, dict) else _ABSENT
        if have is _ABSENT:
            return f"it records no {key}"
        if type(have) is not type(want) or have != want:
            return f"its {key} is {_short(have)}, not {_short(want)}"
    return None


def reuse(path: Path, what: str, load: Callable[[Path], T], check: Callable[[T], str | None],
          say: Callable[[str], None] | None = None) -> T | None:
    """The cache entry at `path` (a file or a folder), loaded by load(path) and accepted when check(entry) finds
    nothing wrong (returns None); else None, after the entry was removed and one line said why, so that the caller
    makes it again. Anything load or check raises (a crafted entry can make a parser raise almost anything) counts
    as a damaged entry, never a traceback. Nothing there: None, silently."""
    if not (path.exists() or path.is_symlink()):
        return None
    try:
        if not path.is_dir():  # a FIFO or a device where a cached file belongs: a library's open would wait on it
            regular(path)
        entry = load(path)
        why = check(entry)
    except GankitError as exc:
        why = f"is damaged ({exc})"
    except Exception as exc:  # noqa: BLE001 - a crafted entry: whatever its parser raises, it is made again
        why = f"is damaged ({type(exc).__name__})"
    if why is None:
        return entry
    discard(path, what, why if why.startswith("is ") else f"does not fit ({why})", say)
    return None


def discard(path: Path, what: str, why: str, say: Callable[[str], None] | None = None) -> None:
    """Remove a cache entry that may not be used (a link itself, never what it points to), saying in one line
    what it was and that it is made again."""
    if say is not None:
        say(f"the cached {what} {path} {why}: making it again")
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _short(value: Any, keep: int = 80) -> str:
    text = repr(value)
    return one_line(text[:keep]) + ("..." if len(text) > keep else "")
