"""JSON lines: one object per verdict row, keys in ``schema.COLUMNS`` order (plus the owner
columns when present), ``null`` for missing values; ``read_jsonl`` gives the same frame back.

An incomplete (interrupted) scan ends with one marker object (``incomplete_marker``), which is
not a row: ``read_jsonl`` skips it and marks the frame (``formats.incomplete``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from twinscan.core.errors import InputFileError
from twinscan.core.schema import (
    COLUMNS,
    OWNER_COLUMNS,
    ResultColumns,
    ScanResult,
    category_values,
    columns_from_frame,
    conform,
)
from twinscan.formats.csv import Memo, iana_texts, is_millisecond
from twinscan.formats.incomplete import incomplete_note, mark_incomplete
from twinscan.formats.outpaths import Dest, text_out

if TYPE_CHECKING:
    import pandas as pd

#: Rows per piece of ``jsonl_chunks`` (as the CSV writer: a -p- scan's text is not built whole).
CHUNK_ROWS = 4096


def jsonl_chunks(runs: Iterable[ResultColumns]) -> Iterator[str]:
    """The verdicts' JSON lines, a piece at a time: for each row, byte for byte what
    ``json.dumps(record, ensure_ascii=False)`` writes for the record whose keys are
    ``schema.COLUMNS`` (plus the owner columns the columns carry), ``null`` for a missing
    value, the RTT as the shortest decimal of its float32 (lossless, and readable).

    Made column by column from the columns, without pandas or a dict per row (a -p- scan's
    65535 rows took 1.1 s through a frame and a dict per row, 0.2-0.3 s here)."""
    for cols in runs:
        for lo in range(0, len(cols), CHUNK_ROWS):
            yield _lines(cols, lo, min(len(cols), lo + CHUNK_ROWS))


def _dumps(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)


def _lines(cols: ResultColumns, lo: int, hi: int) -> str:
    states, reasons = category_values("state"), category_values("reason")
    n = hi - lo
    text = Memo(_dumps)  # (few distinct values per column: hosts, states, ranges)
    fields: list[tuple[str, list[str]]] = [
        ("engine", [text[cols.engine.value]] * n),
        ("technique", [text[cols.technique.value]] * n),
        ("host", [text[str(h)] for h in cols.host[lo:hi]]),
        ("proto", [text[cols.proto.value]] * n),
        ("port", [str(int(p)) for p in cols.port[lo:hi]]),
        ("state", [text[states[c]] for c in cols.state[lo:hi]]),
        ("reason", [text[reasons[c]] for c in cols.reason[lo:hi]]),
        ("reason_ttl", _ints(cols.reason_ttl, lo, hi)),
        ("reason_ip", _texts(cols.reason_ip, lo, hi, text)),
        ("rtt_ms", _rtts(cols.rtt_ms, lo, hi)),
        ("iana_range", [text[iana_texts()[int(p)]] for p in cols.port[lo:hi]]),
    ]
    if cols.pid is not None:
        fields.append(("pid", _ints(cols.pid, lo, hi)))
    for name in OWNER_COLUMNS[1:]:
        values = getattr(cols, name)
        if values is not None:  # free text: no memo
            fields.append((name, ["null" if v is None else _dumps(str(v)) for v in values[lo:hi]]))
    # one format per row: '{"engine": {}, "technique": {}, ...}' with each value's text
    # A column with one value in the piece (the engine, a host, "null" reason IPs) is written
    # into the format itself; the others are its fields.
    parts: list[str] = []
    varying: list[list[str]] = []
    for name, values in fields:
        if n and values.count(values[0]) == n:
            parts.append(f'"{name}": ' + values[0].replace("{", "{{").replace("}", "}}"))
        else:
            parts.append(f'"{name}": {{}}')
            varying.append(values)
    template = "{{" + ", ".join(parts) + "}}\n"
    if not varying:
        return template.format() * n
    return "".join(map(template.format, *varying))


def _ints(values: Sequence[int | None] | None, lo: int, hi: int) -> list[str]:
    if values is None:
        return ["null"] * (hi - lo)
    return ["null" if v is None else str(int(v)) for v in values[lo:hi]]


def _texts(values: Sequence[str | None] | None, lo: int, hi: int, text: Memo) -> list[str]:
    if values is None:
        return ["null"] * (hi - lo)
    return ["null" if v is None else text[str(v)] for v in values[lo:hi]]


def _rtts(values: Sequence[float | None] | None, lo: int, hi: int) -> list[str]:
    if values is None:
        return ["null"] * (hi - lo)
    memo = Memo(_rtt_text)  # (a scan's RTTs repeat: milliseconds to 3 decimals)
    return list(map(memo.__getitem__, values[lo:hi]))


def _rtt_text(value: float | None) -> str:
    """An RTT's JSON text: the shortest decimal of its float32, ``null`` when missing."""
    if value is None or value != value:  # None or NaN
        return "null"
    if is_millisecond(value):  # its repr is its float32's shortest decimal
        return repr(float(value))
    import numpy as np

    return _dumps(float(str(np.float32(value))))


#: The key of the last line of an incomplete scan's JSON lines (a marker, not a row).
INCOMPLETE_KEY = "twinscan_incomplete"


def incomplete_marker(rows: int, reason: str = "interrupted") -> dict[str, Any]:
    """The marker object that ends an incomplete scan's JSON lines."""
    return {INCOMPLETE_KEY: True, "reason": reason, "rows": rows, "note": incomplete_note(rows)}


def write_jsonl(result: ScanResult | pd.DataFrame, dest: Dest) -> None:
    """One JSON object per verdict row (``schema.COLUMNS`` keys), one per line.

    An incomplete result (interrupted) ends with one more line, ``incomplete_marker``:
    ``{"twinscan_incomplete": true, "reason": "interrupted", ...}``."""
    if isinstance(result, ScanResult):
        runs, incomplete = result.column_runs(), result.meta.incomplete
    else:
        runs, incomplete = columns_from_frame(result), False
    with text_out(dest) as out:
        for piece in jsonl_chunks(runs):
            out.write(piece)
        if incomplete:
            rows = sum(len(cols) for cols in runs)
            out.write(json.dumps(incomplete_marker(rows), ensure_ascii=False) + "\n")


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
