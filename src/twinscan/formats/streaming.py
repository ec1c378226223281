"""Writers that append as a scan runs: CSV, JSON lines, Parquet and the text report.

``StreamWriters`` is the ``BlockConsumer`` of ``engines.streamed``: each finished host block
(sorted by host address and port) is appended to every requested file and then forgotten, so
a scan of 16 hosts x 65535 ports keeps one block in memory, not a million verdicts. The files
are byte for byte what the whole-result writers give for the same verdicts (blocks arrive in
technique then host order); the text report keeps only each host's rendered lines.
"""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path
from typing import IO

from twinscan.core.schema import COLUMNS, ResultColumns, ScanMeta
from twinscan.core.schema import host_sort_key as _host_key
from twinscan.core.wording import count
from twinscan.formats.incomplete import incomplete_note


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
        self._segments: dict[tuple[str, str], list[str]] = {}
        self.rows = 0
        if self._csv is not None:
            self._csv.write(",".join(COLUMNS) + "\n")

    def block(self, columns: ResultColumns) -> None:
        self.rows += len(columns)
        if self._csv is not None:
            from twinscan.formats.csv import columns_csv_text

            self._csv.write(columns_csv_text(columns))
            self._csv.flush()
        if self._json is not None:
            from twinscan.formats.jsonl import jsonl_records

            out = io.StringIO()
            for record in jsonl_records(columns.to_frame()):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
            self._json.write(out.getvalue())
            self._json.flush()
        if self._parquet is not None:
            self._parquet.block(columns)
        if self._report:
            self._add_report(columns)

    def _add_report(self, columns: ResultColumns) -> None:
        from twinscan.formats.text_report import _host_lines, _rows, service_names

        names = service_names()
        for (host, technique), rows in _rows([columns]).items():
            lines = _host_lines(rows, names, self._show_closed, False)
            # a host block holds every port of its hosts: one segment per (host, technique)
            self._segments.setdefault((host, technique), []).extend(lines)

    def report(self, meta: ScanMeta) -> str:
        """The text report ``render_text`` gives for the same verdicts."""
        lines: list[str] = []
        keys = sorted(self._segments, key=lambda g: (_host_key(g[0]), g[1]))
        for host, technique in keys:
            lines.append(f"twinscan scan report for {host} ({technique} scan)")
            lines.extend(self._segments[(host, technique)])
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
