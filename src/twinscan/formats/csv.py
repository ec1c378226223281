"""twinscan's CSV: the results schema's columns in ``schema.COLUMNS`` order, one row per verdict.

``write_result_csv`` writes a result that still holds its ``schema.ResultColumns`` without
pandas, byte for byte what ``write_csv`` of its frame gives (property-tested); ``read_csv``
reads either back into the same frame (lossless round trip). An incomplete (interrupted) scan's
CSV ends with one ``#`` comment line (``INCOMPLETE_PREFIX``), which ``read_csv`` skips.
"""

from __future__ import annotations

import functools
import io
import itertools
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from twinscan.core.schema import (
    COLUMNS,
    ResultColumns,
    ScanResult,
    category_values,
    conform,
    iana_code_table,
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
    return "".join(columns_csv_chunks(columns))


#: Rows per piece of ``columns_csv_chunks``: the text of a -p- scan (65535 rows, ~4 MiB) and
#: its per-column string lists (~15 MiB more) were the peak of its memory when built whole.
CSV_CHUNK_ROWS = 4096


def columns_csv_chunks(columns: ResultColumns, rows: int | None = None) -> Iterator[str]:
    """``columns_csv_text`` in pieces of at most ``rows`` (``CSV_CHUNK_ROWS``) rows each, for
    writing as it goes."""
    n = len(columns)
    rows = rows or CSV_CHUNK_ROWS
    # The text of each distinct RTT, made once: a scan's RTTs repeat (milliseconds to 3
    # decimals), so a lookup per row replaces a ``repr`` per row (65535 rows: ~30 ms less).
    texts = Memo(_rtt_text) if n < PLAIN_MAX_ROWS else None
    for lo in range(0, n, rows):
        yield _csv_rows(columns, lo, min(n, lo + rows), texts)


class _NotPlain(Exception):
    """An RTT whose text ``_rtt_text`` cannot give: its piece's RTTs go through numpy."""


class Memo(dict[Any, str]):
    """``make(value)`` for each distinct value, made once. Zero is made each time: 0.0 and
    -0.0 are one key but two texts (pandas writes "-0.0")."""

    def __init__(self, make: Callable[[Any], str]) -> None:
        super().__init__()
        self._make = make

    def __missing__(self, key: Any) -> str:
        text = self._make(key)
        if key is None or key != 0:
            self[key] = text
        return text


def _rtt_text(value: float | None) -> str:
    """pandas writes RTTs as float32 text, which is Python's ``repr`` only for the values
    ``is_millisecond`` accepts; any other raises ``_NotPlain``."""
    if value is None:
        return ""
    if not is_millisecond(value):
        raise _NotPlain
    return repr(float(value))


def is_millisecond(value: float) -> bool:
    """Whether ``value`` is what the engines record, milliseconds rounded to 3 decimals, and
    under 4096 ms. For those, Python's ``repr`` is the float32 text pandas writes (one float32
    holds each such value uniquely and its shortest decimal is the value's own: checked for
    every one of them, and by tests/core/test_result_columns.py)."""
    return abs(value) < 4096 and round(value, 3) == value


def _csv_rows(columns: ResultColumns, lo: int, hi: int, texts: Memo | None) -> str:
    states = category_values("state")
    reasons = category_values("reason")
    n = hi - lo
    ports: list[int] = list(map(int, columns.port[lo:hi]))
    if len(columns) >= CSV_CHUNK_ROWS:  # (the table costs more than a small result's rows)
        iana = list(map(iana_texts().__getitem__, ports))
    else:
        ranges = [r.value for r in IanaRange]
        iana = [ranges[c] for c in iana_codes_plain(ports)]
    ttl = [""] * n if columns.reason_ttl is None else _column_text(columns.reason_ttl[lo:hi])
    rip = [""] * n if columns.reason_ip is None else _column_text(columns.reason_ip[lo:hi])
    rtt: list[str] = [""] * n
    if columns.rtt_ms is not None:
        rtts = columns.rtt_ms[lo:hi]
        try:
            if texts is None:
                raise _NotPlain
            rtt = list(map(texts.__getitem__, rtts))
        except _NotPlain:
            import numpy as np

            floats = np.array([np.nan if v is None else v for v in rtts], dtype=np.float32)
            rtt = ["" if t == "nan" else t for t in floats.astype(str).tolist()]
    prefix = f"{columns.engine.value},{columns.technique.value},"
    proto = columns.proto.value
    hosts, state, reason = columns.host[lo:hi], columns.state[lo:hi], columns.reason[lo:hi]
    if n and all(len(set(c)) == 1 for c in (hosts, state, reason, ttl, rip)):
        # One host, state, reason, TTL and reason IP for the whole piece, as in the closed
        # ports of a large scan: two fields made once, three per row (65535 rows: 30 -> 21 ms).
        head = f"{prefix}{hosts[0]},{proto},"
        mid = f"{states[state[0]]},{reasons[reason[0]]},{ttl[0]},{rip[0]},"
        return "".join(  # (a list, not a generator: ~8% faster over 65535 rows)
            [f"{head}{p},{mid}{ms},{rng}\n" for p, ms, rng in zip(ports, rtt, iana, strict=True)]
        )
    return "".join(
        f"{prefix}{h},{proto},{p},{states[st]},{reasons[r]},{t},{ip},{ms},{rng}\n"
        for h, p, st, r, t, ip, ms, rng in zip(
            hosts, ports, state, reason, ttl, rip, rtt, iana, strict=True,
        )
    )  # fmt: skip


@functools.cache
def iana_texts() -> tuple[str, ...]:
    """The ``iana_range`` text of every port, indexed by port."""
    ranges = [r.value for r in IanaRange]
    return tuple(map(ranges.__getitem__, iana_code_table()))


def _column_text(values: Sequence[Any]) -> list[str]:
    """TTLs or addresses as text, "" for None (few distinct values: one ``str`` each)."""
    memo = Memo(lambda v: "" if v is None else str(v))
    return list(map(memo.__getitem__, values))


#: Columns of this many rows or more are written through numpy (tests force that path by
#: lowering it). Below it, RTTs that are what the engines record are written as Python's
#: ``repr`` (``_rtt_text``), which is the float32 text pandas writes; any other RTT takes its
#: chunk through numpy. numpy is no faster per row here, its import costs a small scan more
#: than the rows, and a streamed scan's main process would carry it into every worker it
#: forks for the next block.
PLAIN_MAX_ROWS = 1 << 62


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
        pieces: Iterable[str] = (text,)
    else:
        pieces = itertools.chain((",".join(COLUMNS) + "\n",), columns_csv_chunks(columns))
        rows = len(columns)
    if result.meta.incomplete:
        pieces = itertools.chain(pieces, (f"# twinscan: {incomplete_note(rows)}\n",))
    if isinstance(path_or_buf, (str, bytes)) or hasattr(path_or_buf, "__fspath__"):
        with open(path_or_buf, "w", newline="") as f:
            f.writelines(pieces)
    else:
        for piece in pieces:
            path_or_buf.write(piece)
