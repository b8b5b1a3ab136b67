"""User-facing errors.

A ``UserError`` is a problem with what the user gave us (a file, a flag, a config value). The CLI prints
its message on one line and exits with code 2, without a traceback. Anything else that escapes is a bug
and exits 1.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass


class UserError(Exception):
    """Bad input: the message names what and where. CLI exit code 2."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one place in one file."""

    file: str
    where: str  # HDF5 path inside the file ("data/demo_3/actions") or "" for the file itself
    what: str

    def __str__(self) -> str:
        return f"{self.file}: {self.where}: {self.what}" if self.where else f"{self.file}: {self.what}"


class DataError(UserError):
    """One or more problems found while validating demonstration files."""

    def __init__(self, problems: list[Problem]):
        self.problems = list(problems)
        first = str(self.problems[0]) if self.problems else "invalid data"
        more = f" (and {len(self.problems) - 1} more problem(s))" if len(self.problems) > 1 else ""
        super().__init__(first + more)


def check_range(name: str, value, lo: float | None = None, hi: float | None = None, *, lo_open: bool = False,
                hi_open: bool = False, integer: bool = False, note: str = "") -> None:
    """Raise ``UserError`` naming the option ``name`` and ``value`` unless ``value`` is a finite number (an
    integer with ``integer``) in the range from ``lo`` to ``hi`` (open at an end with ``lo_open``/``hi_open``;
    None: unbounded). NaN and inf are always rejected. ``note``: what the bounds mean, appended."""
    if integer:
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
    else:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
    ok = ok and (integer or math.isfinite(value))
    if ok and lo is not None:
        ok = value > lo if lo_open else value >= lo
    if ok and hi is not None:
        ok = value < hi if hi_open else value <= hi
    if ok:
        return
    what = "an integer" if integer else "a finite number"
    lo_s, hi_s = (f"{b:g}" if isinstance(b, float) else str(b) for b in (lo, hi))
    if lo is not None and hi is not None:
        what += f" in {'(' if lo_open else '['}{lo_s}, {hi_s}{')' if hi_open else ']'}"
    elif lo is not None:
        what += f" {'>' if lo_open else '>='} {lo_s}"
    elif hi is not None:
        what += f" {'<' if hi_open else '<='} {hi_s}"
    raise UserError(f"{name} must be {what}{note}, got {value!r}")
