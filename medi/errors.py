"""Errors medi raises: each names the file (and line or row) and what is wrong."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class MediError(Exception):
    """A user-facing error; its message is complete and printed as is."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One bad row or file found while reading a source."""

    file: str
    where: str  # "line 17", "Instances[3]", "" for the whole file
    message: str
    # rows it cost: 1 for a bad row, N for a damaged block of N rows, 0 for none (an empty file), None when not
    # knowable (a file cut mid-stream loses the rest of it)
    rows: int | None = 1

    def __str__(self) -> str:
        at = f"{self.file}, {self.where}" if self.where else self.file
        return f"{at}: {self.message}"


class SourceError(MediError):
    """A whole source cannot be read (missing file, broken JSON, refused)."""

    def __init__(self, source: str, reason: str, message: str, path: Path | str | None = None):
        self.source = source
        self.reason = reason
        self.path = str(path) if path is not None else None
        super().__init__(f"{source}: {message}")


def explain_validation(exc: Exception) -> str:
    """A pydantic ValidationError as ``key.path: message; ...`` (other errors as their text)."""
    errors = getattr(exc, "errors", None)
    if not callable(errors):
        return str(exc)
    return "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in errors())
