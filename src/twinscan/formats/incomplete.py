"""The incomplete-scan mark shared by the CSV and JSON lines formats.

An interrupted scan (exit 130) writes the verdicts that finished and says so: the CSV ends with
a ``#`` comment (``formats.csv``), the JSON lines with a marker object (``formats.jsonl``).
Their readers set ``frame.attrs[INCOMPLETE_ATTR]`` and issue an ``IncompleteScanWarning``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

#: ``frame.attrs`` key the readers set (to the marker's text) for an incomplete scan's file.
INCOMPLETE_ATTR = "twinscan_incomplete"


class IncompleteScanWarning(UserWarning):
    """A saved scan that says it is incomplete (interrupted): ports may be missing from it."""


def incomplete_note(rows: int, reason: str = "interrupted") -> str:
    """The text of the incomplete-scan mark (CSV comment, JSON lines marker, warnings)."""
    verdicts = "1 port verdict" if rows == 1 else f"{rows} port verdicts"
    return f"incomplete scan ({reason}): {verdicts}; ports without a row were not scanned"


def mark_incomplete(frame: pd.DataFrame, note: str, source: str) -> None:
    """Record on a frame read from ``source`` that it is incomplete, and warn."""
    frame.attrs[INCOMPLETE_ATTR] = note
    warnings.warn(f"{source}: {note}", IncompleteScanWarning, stacklevel=3)


def is_incomplete(frame: pd.DataFrame) -> bool:
    """Whether ``frame`` was read from a file marked incomplete."""
    return INCOMPLETE_ATTR in frame.attrs
