"""Writers that append as a scan runs: CSV, JSON lines, Parquet and the text report.

``StreamWriters`` is the ``BlockConsumer`` of ``engines.streamed``: each finished host block
(sorted by host address and port) is appended to every requested file and then forgotten, so
a scan of 16 hosts x 65535 ports keeps one block in memory, not a million verdicts. The files
are byte for byte what the whole-result writers give for the same verdicts (blocks arrive in
technique then host order); the text report keeps only each host's rendered lines.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sys
from collections import Counter
from pathlib import Path
from typing import IO

from twinscan.core.schema import COLUMNS, ResultColumns, ScanMeta
from twinscan.core.schema import host_sort_key as _host_key
from twinscan.core.vocab import PortState
from twinscan.core.wording import count
from twinscan.formats.incomplete import incomplete_note

_Cells = tuple[int, str, str, str, str, str]  # text_report's row fields


def _folded(rows: list[_Cells], show_closed: bool) -> set[str]:
    """The states ``text_report._host_lines`` folds into "Not shown" for these rows."""
    from twinscan.formats.text_report import FOLD_THRESHOLD

    hidden: set[str] = set() if show_closed else {PortState.CLOSED.value}
    counts = Counter(row[2] for row in rows)
    if not show_closed and counts:
        top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if n > FOLD_THRESHOLD:
            hidden.add(top)
    return hidden


#: rows turned into text at a time.
CHUNK_ROWS = 8192


def _slice(columns: ResultColumns, lo: int, hi: int) -> ResultColumns:
    if lo == 0 and hi >= len(columns):
        return columns
    values = {}
    for f in dataclasses.fields(ResultColumns)[3:]:
        col = getattr(columns, f.name)
        values[f.name] = None if col is None else col[lo:hi]
    return ResultColumns(columns.engine, columns.technique, columns.proto, **values)  # type: ignore[arg-type]


def _open(path: Path) -> IO[str]:
    if str(path) == "-":
        return sys.stdout
    return open(path, "w", encoding="utf-8", newline="\n")


class StreamWriters:
    """Appends every block to the requested outputs; ``close(meta)`` ends them."""

    def __init__(
        self,
        *,
        csv: Path | None = None,
        json_path: Path | None = None,
        parquet: Path | None = None,
        report: bool = True,
        show_closed: bool = False,
    ) -> None:
        self._csv = _open(csv) if csv is not None else None
        self._json = _open(json_path) if json_path is not None else None
        self._parquet = None
        if parquet is not None:
            from twinscan.formats.parquet import ParquetWriter

            self._parquet = ParquetWriter(parquet)
        self._report = report
        self._show_closed = show_closed
        self._hosts: dict[tuple[str, str], tuple[list[_Cells], Counter[tuple[str, str, str]]]] = {}
        self.rows = 0
        if self._csv is not None:
            self._csv.write(",".join(COLUMNS) + "\n")

    def block(self, columns: ResultColumns) -> None:
        self.rows += len(columns)
        for lo in range(0, len(columns), CHUNK_ROWS):  # text in small pieces: a low peak
            piece = _slice(columns, lo, lo + CHUNK_ROWS)
            if self._csv is not None:
                from twinscan.formats.csv import columns_csv_text

                self._csv.write(columns_csv_text(piece))
            if self._json is not None:
                from twinscan.formats.jsonl import jsonl_records

                out = io.StringIO()
                for record in jsonl_records(piece.to_frame()):
                    out.write(json.dumps(record, ensure_ascii=False) + "\n")
                self._json.write(out.getvalue())
        for stream in (self._csv, self._json):
            if stream is not None:
                stream.flush()
        if self._parquet is not None:
            self._parquet.block(columns)
        if self._report:
            self._add_report(columns)

    def _add_report(self, columns: ResultColumns) -> None:
        """Keep what the report will show of each host: its shown rows, and only the counts of
        the rows it folds into "Not shown" (the service names are looked up at the end)."""
        from twinscan.formats.text_report import _rows

        for key, rows in _rows([columns]).items():
            hidden = _folded(rows, self._show_closed)
            shown = [r for r in rows if r[2] not in hidden]
            folded = Counter((r[1], r[2], r[3]) for r in rows if r[2] in hidden)
            # a host block holds every port of its hosts: one entry per (host, technique)
            self._hosts[key] = (shown, folded)

    def report(self, meta: ScanMeta) -> str:
        """The text report ``render_text`` gives for the same verdicts."""
        from twinscan.formats.text_report import _host_lines, service_names

        names = service_names()
        lines: list[str] = []
        keys = sorted(self._hosts, key=lambda g: (_host_key(g[0]), g[1]))
        for host, technique in keys:
            shown, folded = self._hosts[(host, technique)]
            # the folded rows' ports are never printed: counts stand in for them
            rows = shown + [
                (0, p, s, r, "", "") for (p, s, r), n in folded.items() for _ in range(n)
            ]
            lines.append(f"twinscan scan report for {host} ({technique} scan)")
            lines.extend(_host_lines(rows, names, self._show_closed, False))
            lines.append("")
        hosts = len({host for host, _ in keys})
        status = " (INCOMPLETE: interrupted)" if meta.incomplete else ""
        lines.append(
            f"twinscan done: {count(hosts, 'IP address', 'IP addresses')}, "
            f"{count(self.rows, 'port verdict')} in {meta.elapsed_s:.2f} seconds "
            f"({meta.engine} engine){status}"
        )
        return "\n".join(lines)

    def close(self, meta: ScanMeta) -> None:
        if self._csv is not None:
            if meta.incomplete:
                self._csv.write(f"# twinscan: {incomplete_note(self.rows)}\n")
            if self._csv is not sys.stdout:
                self._csv.close()
            else:
                self._csv.flush()
        if self._json is not None:
            if meta.incomplete:
                from twinscan.formats.jsonl import incomplete_marker

                marker = incomplete_marker(self.rows)
                self._json.write(json.dumps(marker, ensure_ascii=False) + "\n")
            if self._json is not sys.stdout:
                self._json.close()
            else:
                self._json.flush()
        if self._parquet is not None:
            self._parquet.close(meta)
