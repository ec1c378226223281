"""JSON lines: one object per verdict row, keys in ``schema.COLUMNS`` order (plus the owner
columns when present), ``null`` for missing values; ``read_jsonl`` gives the same frame back.

An incomplete (interrupted) scan ends with one marker object (``incomplete_marker``), which is
not a row: ``read_jsonl`` skips it and marks the frame (``formats.incomplete``).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from twinscan.core.errors import InputFileError
from twinscan.core.schema import COLUMNS, OWNER_COLUMNS, ScanResult, conform
from twinscan.formats.incomplete import incomplete_note, mark_incomplete
from twinscan.formats.outpaths import Dest, text_out

if TYPE_CHECKING:
    import pandas as pd

_INT_COLUMNS = {"port", "reason_ttl", "pid"}
_FLOAT_COLUMNS = {"rtt_ms"}


def _json_value(column: str, value: Any) -> Any:
    if value is None or value is _na() or (isinstance(value, float) and math.isnan(value)):
        return None
    if column in _INT_COLUMNS:
        return int(value)
    if column in _FLOAT_COLUMNS:
        import numpy as np

        # The shortest decimal that reads back as the same float32 (lossless, and readable).
        return float(str(np.float32(value)))
    return str(value)


def _na() -> Any:
    import pandas as pd

    return pd.NA


def jsonl_records(frame: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """The frame's rows as JSON-ready dicts, keys in column order, ``None`` for missing."""
    columns = [c for c in (*COLUMNS, *OWNER_COLUMNS) if c in frame.columns]
    data = frame[columns].astype("object")
    for values in data.itertuples(index=False, name=None):
        yield {c: _json_value(c, v) for c, v in zip(columns, values, strict=True)}


#: The key of the last line of an incomplete scan's JSON lines (a marker, not a row).
INCOMPLETE_KEY = "twinscan_incomplete"


def incomplete_marker(rows: int, reason: str = "interrupted") -> dict[str, Any]:
    """The marker object that ends an incomplete scan's JSON lines."""
    return {INCOMPLETE_KEY: True, "reason": reason, "rows": rows, "note": incomplete_note(rows)}


def write_jsonl(result: ScanResult | pd.DataFrame, dest: Dest) -> None:
    """One JSON object per verdict row (``schema.COLUMNS`` keys), one per line.

    An incomplete result (interrupted) ends with one more line, ``incomplete_marker``:
    ``{"twinscan_incomplete": true, "reason": "interrupted", ...}``."""
    frame = result.frame if isinstance(result, ScanResult) else result
    incomplete = isinstance(result, ScanResult) and result.meta.incomplete
    with text_out(dest) as out:
        for record in jsonl_records(frame):
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
        if incomplete:
            out.write(json.dumps(incomplete_marker(len(frame)), ensure_ascii=False) + "\n")


def read_jsonl(source: str | os.PathLike[str] | IO[str]) -> pd.DataFrame:
    """Read twinscan JSON lines back into a schema frame (lossless round trip).

    The incomplete-scan marker (``INCOMPLETE_KEY``) is not a row: it sets
    ``frame.attrs[INCOMPLETE_ATTR]`` and issues a ``IncompleteScanWarning``."""
    import pandas as pd

    name = os.fspath(source) if isinstance(source, str | os.PathLike) else "<stream>"
    try:
        if isinstance(source, str | os.PathLike):
            text = Path(source).read_text(encoding="utf-8")
        else:
            text = source.read()
    except FileNotFoundError:
        raise InputFileError(name, "no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(name, f"cannot read: {exc}") from None
    records: list[dict[str, Any]] = []
    note: str | None = None
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputFileError(name, f"line {lineno}: not JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise InputFileError(name, f"line {lineno}: expected a JSON object per line")
        if record.get(INCOMPLETE_KEY) is True:
            reason = str(record.get("reason") or "interrupted")
            note = str(record.get("note") or incomplete_note(len(records), reason))
            continue
        records.append(record)
    columns = list(COLUMNS) + [c for c in OWNER_COLUMNS if any(c in r for r in records)]
    raw = pd.DataFrame.from_records(records, columns=columns)
    try:
        frame = conform(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise InputFileError(name, f"not twinscan JSON lines: {exc}") from None
    if note is not None:
        mark_incomplete(frame, note, name)
    return frame
