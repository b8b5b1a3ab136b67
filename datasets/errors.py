"""User-facing errors.

A ``UserError`` is a problem with what the user gave us (a file, a flag, a config value). The CLI prints
its message on one line and exits with code 2, without a traceback. Anything else that escapes is a bug
and exits 1.
"""

from __future__ import annotations

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
