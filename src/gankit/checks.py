"""Values that come from outside (a file anyone may have edited, an argument of the Python API) checked before
anything uses them or anything is written: `expect` for one value, `expect_fields` for a record read from a
file (one declarative table per record), `whole` for an argument, `seed` for every --seed. Each failure is one
GankitError naming the file (or argument), the key, what was there and what belongs there.

`plain` makes a string from a file safe for a matplotlib figure (no `$...$` mathtext).
Torch-free: the checks of tensors are gankit.weights.
"""

from __future__ import annotations

import math
import numbers
from typing import Any, Mapping

from gankit.errors import GankitError
from gankit.files import is_whole

MAX_EPOCH, MAX_STEP = 10**7, 2**53  # the most epochs a run may have, and steps: what a file may record
SEED_LIMIT = 2**63  # torch.Generator.manual_seed takes [0, 2**63); every --seed and seed= is checked against it
_NAMES = {int: "a whole number", float: "a number", str: "a string", bool: "true or false", list: "a list",
          dict: "a table (JSON object)"}


class Field:
    """What one key of a record must hold: a kind (int, float, str, bool, list, dict), an inclusive range for
    numbers (or for a list's or string's length), whether it may be absent (optional) or null (null), whether a
    float may be infinite (never NaN)."""

    def __init__(self, kind: type, low: float | None = None, high: float | None = None, optional: bool = False,
                 null: bool = False, choices: tuple | None = None, infinite: bool = False):
        self.kind, self.low, self.high, self.choices = kind, low, high, choices
        self.optional, self.null, self.infinite = optional, null, infinite


def _describe(kind: type, low, high, choices) -> str:
    if choices is not None:
        return "one of " + ", ".join(map(str, choices))
    text = _NAMES.get(kind, kind.__name__)
    sized = " of length" if kind in (list, str, dict) else ""
    if low is not None and high is not None:
        text += f"{sized} in [{low}, {high}]"
    elif low is not None or high is not None:
        text += f"{sized} >= {low}" if high is None else f"{sized} <= {high}"
    return text


def _fits(value: Any, kind: type, low, high, choices, infinite: bool = False) -> bool:
    if kind is int:
        ok = is_whole(value)
    elif kind is float:
        ok = (isinstance(value, numbers.Real) and not isinstance(value, bool)
              and (math.isfinite(value) or (infinite and not math.isnan(value))))
    else:
        ok = isinstance(value, kind)
    if not ok:
        return False
    if choices is not None:
        return value in choices
    size = len(value) if kind in (list, str, dict) else value
    return (low is None or size >= low) and (high is None or size <= high)


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def expect(value: Any, kind: type, what: str, low: float | None = None, high: float | None = None,
           choices: tuple | None = None, infinite: bool = False) -> Any:
    """value, when it is of kind (int excludes bool; float takes any finite real number, or an infinite one with
    infinite=True) and within [low, high] (for a list, a string or a table: its length) or among choices; else
    GankitError naming `what`."""
    if not _fits(value, kind, low, high, choices, infinite):
        raise GankitError(f"{what} must be {_describe(kind, low, high, choices)}, got {_shown(value)}")
    return float(value) if kind is float else int(value) if kind is int else value


def expect_fields(record: Any, fields: Mapping[str, Field], where: str, extra: bool = True) -> dict[str, Any]:
    """record checked against a table of Fields: it must be a dict, each key of the table present (unless
    optional) with a value that fits; extra=False also refuses keys the table does not name. Returns the record."""
    if not isinstance(record, dict):
        raise GankitError(f"{where} must be a table (JSON object) of {', '.join(fields)}, got {_shown(record)}")
    if not extra and (unknown := sorted(set(record) - set(fields))):
        raise GankitError(f"{where} holds keys gankit does not write: {', '.join(map(str, unknown))}")
    for key, field in fields.items():
        if key not in record and not field.optional:
            raise GankitError(f"{where} lacks '{key}'")
        value = record.get(key)
        if key not in record or (value is None and field.null):
            continue
        expect(value, field.kind, f"{where}: '{key}'", field.low, field.high, field.choices, field.infinite)
    return record


def fitting(record: dict[str, Any], fields: Mapping[str, Field]) -> dict[str, Any]:
    """The entries of a record that fit their Field (entries the table does not name are kept): for metadata that
    is only shown or carried along, where a crafted value is dropped rather than refused."""
    return {k: v for k, v in record.items()
            if k not in fields or _fits(v, fields[k].kind, fields[k].low, fields[k].high, fields[k].choices,
                                        fields[k].infinite)}


def whole(value: Any, name: str, low: int = 0, high: int | None = None) -> int:
    """An argument that must be a whole number in [low, high] (numpy's integers too, never a bool or 2.5)."""
    return expect(value, int, name, low, high)


def seed(value: Any, name: str = "--seed", spare: int = 0) -> int:
    """A seed: a whole number in [0, 2**63), what torch's generators take (spare: a command that also seeds with
    seed + 1 ... seed + spare needs those below 2**63 too)."""
    if not _fits(value, int, 0, SEED_LIMIT - 1 - spare, None):
        raise GankitError(f"{name} must be a whole number in [0, 2**63{f' - {spare}' if spare else ''}), "
                          f"got {_shown(value)}")
    return int(value)


def plain(text: Any) -> str:
    """A string from a file or a user, for a matplotlib title or legend: every '$' escaped, so that no
    `$...$` reaches matplotlib's mathtext (which would parse it, and fail on what it cannot read)."""
    return str(text).replace("$", r"\$")
