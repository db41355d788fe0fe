"""Everything gankit says on the terminal besides a command's own output: notes, warnings, progress bars.

One way to say each, on stderr, prefixed "gankit: ", so that stdout stays the command's result (JSON, a table,
paths). Under torchrun only rank 0 says notes, warnings and progress (`quiet_unless_main`; an error and a
Ctrl-C's line are said on every rank, each of which stops), and a message never tears a progress bar:
while tqdm is loaded it is written through tqdm.write. tqdm itself is imported by the first bar, not here
(`gankit --help` imports this module and stays fast).
"""

from __future__ import annotations

import sys

_silent = False  # set on every rank but 0 (quiet_unless_main)


def quiet_unless_main(main: bool) -> None:
    """Under torchrun: rank 0 speaks, the other ranks say nothing (their numbers are rank 0's)."""
    global _silent
    _silent = not main


def one_line(text: str) -> str:
    """A message as the terminal gets it: control characters (a newline in a path, an escape sequence in a file
    name) written as escapes, so that every message is one line and none can steer the terminal."""
    return text if text.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _write(line: str) -> None:
    line = one_line(line)
    if _silent:
        return
    tqdm = sys.modules.get("tqdm.auto")
    if tqdm is not None:  # a bar may be on screen: tqdm.write keeps it whole
        tqdm.tqdm.write(line, file=sys.stderr)
    else:
        print(line, file=sys.stderr, flush=True)


def say(message: str) -> None:
    """What gankit is doing ('packing 3926 images ...', 'training the evaluator ...')."""
    _write(f"gankit: {message}")


def note(message: str) -> None:
    """Something the user should know that changes nothing they asked for."""
    _write(f"gankit: note: {message}")


def warn(message: str) -> None:
    """Something probably wrong (a health finding, a setting that cannot do what it says)."""
    _write(f"gankit: warning: {message}")


def silent(message: str) -> None:  # noqa: ARG001 - says nothing, by design
    """A `say` that says nothing: what a function that takes one gets when progress is off."""


def error(message: str) -> None:
    """The one line of an error the user can fix (the CLI then exits 2); said on every rank."""
    print(one_line(f"gankit: error: {message}"), file=sys.stderr, flush=True)


def interrupted(what_is_left: str) -> None:
    """The line of a Ctrl-C: what a stopped command leaves behind; said on every rank (each stops)."""
    print(one_line(f"gankit: interrupted; {what_is_left}"), file=sys.stderr, flush=True)


def bar(total: int, desc: str, enabled: bool = True, unit: str = "batch", leave: bool = True):
    """A tqdm progress bar on stderr (`.update(n)`, `.set_postfix(...)`, `.close()`); it draws nothing when not
    enabled or not on rank 0. leave=False: the bar is wiped when it closes (a step inside a longer command)."""
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit=unit, disable=not enabled or _silent, leave=leave, dynamic_ncols=True,
                file=sys.stderr)
