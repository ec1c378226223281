"""twinscan's CSV: the results schema's columns in ``schema.COLUMNS`` order, one row per verdict.

``write_result_csv`` writes a result that still holds its ``schema.ResultColumns`` without
pandas, byte for byte what ``write_csv`` of its frame gives (property-tested); ``read_csv``
reads either back into the same frame (lossless round trip). An incomplete (interrupted) scan's
CSV ends with one ``#`` comment line (``INCOMPLETE_PREFIX``), which ``read_csv`` skips.
"""

from __future__ import annotations

import io
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twinscan.core.schema import (
    COLUMNS,
    ResultColumns,
    ScanResult,
    category_values,
    conform,
    iana_codes,
    iana_codes_plain,
)
from twinscan.core.vocab import IanaRange
from twinscan.formats.incomplete import incomplete_note, mark_incomplete

if TYPE_CHECKING:
    import pandas as pd

#: The first characters of the comment line that ends the CSV of an incomplete scan.
INCOMPLETE_PREFIX = "# twinscan: incomplete scan"


def read_csv(path_or_buf: Any) -> pd.DataFrame:
    """Read a twinscan CSV back into a schema frame (lossless round trip).

    Lines starting with ``#`` are comments. The incomplete-scan mark an interrupted scan's CSV
    ends with sets ``frame.attrs[INCOMPLETE_ATTR]`` and issues an ``IncompleteScanWarning``.
    """
    import pandas as pd

    if isinstance(path_or_buf, (str, bytes)) or hasattr(path_or_buf, "__fspath__"):
        with open(path_or_buf, encoding="utf-8-sig", newline="") as f:
            text = f.read()
        name = os.fsdecode(path_or_buf)
    else:
        text = path_or_buf.read()
        name = getattr(path_or_buf, "name", "<stream>")
    note: str | None = None
    if "#" in text:
        kept: list[str] = []
        for line in text.splitlines(keepends=True):
            if not line.startswith("#"):
                kept.append(line)
            elif line.startswith(INCOMPLETE_PREFIX):
                note = line[len("# twinscan: ") :].strip()
        text = "".join(kept)
    raw = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False, na_values=[""])
    frame = conform(raw)
    if note is not None:
        mark_incomplete(frame, note, name)
    return frame


def write_csv(frame: pd.DataFrame, path_or_buf: Any) -> None:
    frame.to_csv(path_or_buf, index=False)


def columns_csv_text(columns: ResultColumns) -> str:
    """The rows exactly as ``write_csv`` of ``columns.to_frame()`` writes them (no header).

    No field can need CSV quoting: enum values, addresses and numbers hold no comma, quote or
    newline, so lines are joined directly (the property test holds us to it). Columns with
    owner columns (free text) go through the frame instead (``write_result_csv``).
    """
    n = len(columns)
    states = category_values("state")
    reasons = category_values("reason")
    ranges = [r.value for r in IanaRange]
    plain = n < PLAIN_MAX_ROWS and _millisecond_rtts(columns.rtt_ms)
    if plain:
        ports: list[int] = [int(p) for p in columns.port]
        iana = [ranges[i] for i in iana_codes_plain(ports)]
    else:
        import numpy as np

        ports = np.asarray(columns.port, dtype=np.int64).tolist()
        iana = [ranges[i] for i in iana_codes(ports).tolist()]
    ttl = (
        [""] * n
        if columns.reason_ttl is None
        else ["" if v is None else str(v) for v in columns.reason_ttl]
    )
    rip = (
        [""] * n
        if columns.reason_ip is None
        else ["" if v is None else v for v in columns.reason_ip]
    )
    if columns.rtt_ms is None:
        rtt = [""] * n
    elif plain:
        rtt = ["" if v is None else repr(float(v)) for v in columns.rtt_ms]
    else:
        import numpy as np

        floats = np.array([np.nan if v is None else v for v in columns.rtt_ms], dtype=np.float32)
        rtt = ["" if t == "nan" else t for t in floats.astype(str).tolist()]
    prefix = f"{columns.engine.value},{columns.technique.value},"
    proto = columns.proto.value
    return "".join(
        f"{prefix}{h},{proto},{p},{states[st]},{reasons[r]},{t},{ip},{ms},{rng}\n"
        for h, p, st, r, t, ip, ms, rng in zip(
            columns.host, ports, columns.state, columns.reason, ttl, rip, rtt, iana,
            strict=True,
        )
    )  # fmt: skip


#: Columns of fewer rows than this are written without numpy whenever their RTTs allow it
#: (``_millisecond_rtts``): numpy is no faster per row here (65535 rows: 0.10 s either way),
#: its import costs a small scan more than the rows, and a streamed scan's main process would
#: carry it into every worker it forks for the next block. The numpy path remains for other
#: RTTs (and tests force it by lowering this).
PLAIN_MAX_ROWS = 1 << 62


def _millisecond_rtts(rtts: Sequence[float | None] | None) -> bool:
    """Whether every RTT is what the engines record, milliseconds rounded to 3 decimals, and
    under 4096 ms. For those, Python's ``repr`` is the float32 text pandas writes (one float32
    holds each such value uniquely and its shortest decimal is the value's own: checked for
    every one of them, and by tests/core/test_result_columns.py)."""
    if rtts is None:
        return True
    return all(v is None or (abs(v) < 4096 and round(v, 3) == v) for v in rtts)


def write_result_csv(result: ScanResult, path_or_buf: Any) -> None:
    """``write_csv`` of ``result.frame``, byte for byte, without building the frame when the
    result still holds its columns (no pandas import on a plain ``scan --csv``).

    An incomplete result (interrupted) gets one more line, a ``#`` comment that says so
    (``read_csv`` skips it and marks the frame)."""
    columns = result.unbuilt_columns
    if columns is None or columns.has_owners:
        if not result.meta.incomplete:
            write_csv(result.frame, path_or_buf)
            return
        text = result.frame.to_csv(index=False)
        rows = len(result.frame)
    else:
        text = ",".join(COLUMNS) + "\n" + columns_csv_text(columns)
        rows = len(columns)
    if result.meta.incomplete:
        text += f"# twinscan: {incomplete_note(rows)}\n"
    if isinstance(path_or_buf, (str, bytes)) or hasattr(path_or_buf, "__fspath__"):
        with open(path_or_buf, "w", newline="") as f:
            f.write(text)
    else:
        path_or_buf.write(text)
