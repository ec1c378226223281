"""Writers that append as a scan runs: CSV, JSON lines, Parquet, nmap's ``-oX``/``-oN``/``-oG``
and the text report.

``StreamWriters`` is the ``BlockConsumer`` of ``engines.streamed``: each finished host block
(sorted by host address and port) is appended to every requested file and then forgotten, so
a scan of 16 hosts x 65535 ports keeps one block in memory, not a million verdicts. The files
are byte for byte what the whole-result writers give for the same verdicts (blocks arrive in
technique then host order), except for the nmap formats' times: a host's ``endtime`` is when
its block was written, the ``<scaninfo>`` lists the requested ports (the same as the verdicts'
once the scan completes). nmap's formats hold one ``<host>`` per address with every protocol's
ports, so they stream a scan of one technique only (``engines.job`` keeps a scan of several on
the whole-result path). The text report keeps only each host's rendered lines.

A Dask scan whose workers write the Parquet files themselves hands the report a ``Summary`` of
each block instead of its verdicts (``StreamWriters.summary``): the closed ports as counts.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from twinscan.core.schema import COLUMNS, ResultColumns, ScanMeta, category_code, category_values
from twinscan.core.schema import host_sort_key as _host_key
from twinscan.core.vocab import PortState, Technique
from twinscan.core.wording import count
from twinscan.formats.incomplete import incomplete_note

if TYPE_CHECKING:
    from twinscan.formats.text_report import Row

#: (host, proto, state, reason) -> rows: verdicts the report counts without their ports.
Counts = Counter[tuple[str, str, str, str]]


#: rows turned into text at a time.
CHUNK_ROWS = 8192


@dataclasses.dataclass(frozen=True, slots=True)
class Summary:
    """What the text report needs of some verdicts of one technique: the rows it may list
    (``kept``) and, as counts, the closed ones it always folds (``folded``)."""

    technique: Technique
    rows: int
    kept: ResultColumns | None
    folded: Counts


def summarise(columns: ResultColumns) -> Summary:
    """``columns`` as the report sees them without ``--show-closed`` (pure; a Dask worker
    sends this instead of its verdicts when the client writes nothing but the report)."""
    closed = category_code("state", PortState.CLOSED.value)
    states, reasons = category_values("state"), category_values("reason")
    proto = columns.proto.value
    keep = [i for i, s in enumerate(columns.state) if s != closed]
    folded: Counts = Counter(
        (h, proto, states[s], reasons[r])
        for h, s, r in zip(columns.host, columns.state, columns.reason, strict=True)
        if s == closed
    )
    kept = columns.take(keep) if keep else None
    return Summary(columns.technique, len(columns), kept, folded)


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
        xml: Path | None = None,
        normal: Path | None = None,
        grepable: Path | None = None,
        head: ScanMeta | None = None,
        ports: Mapping[Technique, Sequence[int]] | None = None,
        report: bool = True,
        show_closed: bool = False,
    ) -> None:
        """``head`` (the scan's metadata as it starts) and ``ports`` (the requested ports of
        its one technique) are what the nmap formats' headers say; they are needed with
        ``xml``, ``normal`` or ``grepable``."""
        self._nmap = None
        if any(p is not None for p in (xml, normal, grepable)):
            if head is None or ports is None:
                raise ValueError("the nmap formats need the scan's head and ports")
            self._nmap = NmapStreams(head, ports, xml=xml, normal=normal, grepable=grepable)
        self._csv = _open(csv) if csv is not None else None
        self._json = _open(json_path) if json_path is not None else None
        self._parquet = None
        if parquet is not None:
            from twinscan.formats.parquet import ParquetWriter

            self._parquet = ParquetWriter(parquet)
        self._report = report
        self._show_closed = show_closed
        self._hosts: dict[tuple[str, str], tuple[list[Row], Counter[tuple[str, str, str]]]] = {}
        self.rows = 0
        if self._csv is not None:
            self._csv.write(",".join(COLUMNS) + "\n")

    def block(self, columns: ResultColumns) -> None:
        self.rows += len(columns)
        for lo in range(0, len(columns), CHUNK_ROWS):  # text in small pieces: a low peak
            piece = columns.span(lo, lo + CHUNK_ROWS)
            if self._csv is not None:
                from twinscan.formats.csv import columns_csv_text

                self._csv.write(columns_csv_text(piece))
            if self._json is not None:
                from twinscan.formats.jsonl import jsonl_chunks

                self._json.writelines(jsonl_chunks([piece]))
        for stream in (self._csv, self._json):
            if stream is not None:
                stream.flush()
        if self._parquet is not None:
            self._parquet.block(columns)
        if self._nmap is not None:
            self._nmap.block(columns)
        if self._report:
            self._add_report(columns.technique, columns, Counter())

    def summary(self, summary: Summary) -> None:
        """A host block's report summary, for a scan whose verdicts were all written elsewhere
        (by Dask workers): only the report is kept."""
        if self._show_closed or any(
            s is not None for s in (self._csv, self._json, self._parquet, self._nmap)
        ):
            raise ValueError("a summary carries no verdicts to write or closed ports to show")
        self.rows += summary.rows
        if self._report:
            self._add_report(summary.technique, summary.kept, summary.folded)

    def _add_report(
        self, technique: Technique, columns: ResultColumns | None, counted: Counts
    ) -> None:
        """Keep what the report will show of each host: its shown rows, and only the counts of
        the rows it folds into "Not shown" (the service names are looked up at the end).
        ``counted``: more rows of these hosts, as counts (never shown: closed ones).

        Rows are counted by their (state, reason) codes, as ``render_text`` counts them, and
        built only for the ports shown: a -p- host block makes a few rows, not 65535."""
        from twinscan.formats.text_report import _hidden, _parts, _shown

        states, reasons = category_values("state"), category_values("reason")
        parts = _parts([columns]) if columns is not None else {}
        extra: dict[tuple[str, str], Counter[tuple[str, str, str]]] = {}
        for (host, proto, state, reason), n in counted.items():
            extra.setdefault((host, technique.value), Counter())[(proto, state, reason)] = n
        for key in parts.keys() | extra.keys():
            more = extra.get(key, Counter())
            # (proto, state, reason) of the block's rows, in the order of their first rows
            here: Counter[tuple[str, str, str]] = Counter()
            for part in parts.get(key, []):
                proto = part.cols.proto.value
                for (state_code, reason_code), n in part.pairs.items():
                    here[(proto, states[state_code], reasons[reason_code])] += n
            per_state: Counter[str] = Counter()
            for (_, state, _), n in (*here.items(), *more.items()):
                per_state[state] += n
            hidden = _hidden(per_state, self._show_closed)
            shown = [
                row for part in parts.get(key, []) for row in _shown(part, hidden, states, reasons)
            ]
            folded = Counter({k: n for k, n in here.items() if k[1] in hidden}) + more
            # a host block holds every port of its hosts: one entry per (host, technique)
            self._hosts[key] = (shown, folded)

    def report(self, meta: ScanMeta) -> str:
        """The text report ``render_text`` gives for the same verdicts."""
        from twinscan.formats.text_report import _hidden, _lines, _Tally, service_names

        names = service_names()
        lines: list[str] = []
        keys = sorted(self._hosts, key=lambda g: (_host_key(g[0]), g[1]))
        for host, technique in keys:
            shown, folded = self._hosts[(host, technique)]
            # the shown rows, then the folded ones as counts (their ports are never printed),
            # in the order render_text counts them (ties of "Not shown" reasons keep it)
            tally = _Tally()
            for row in shown:
                tally.add(row.proto, row.state, row.reason)
            for (proto, state, reason), n in folded.items():
                tally.add(proto, state, reason, n)
            hidden = _hidden(tally.ports, self._show_closed)
            listed = [row for row in shown if row.state not in hidden]
            lines.append(f"twinscan scan report for {host} ({technique} scan)")
            lines.extend(_lines(tally, hidden, listed, names, False))
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
        if self._nmap is not None:
            self._nmap.close(meta)


class NmapStreams:
    """nmap's ``-oX``, ``-oN`` and ``-oG`` appended host by host, from the same per-host
    renderers the whole-result writers use: the headers when opened, each block's hosts as
    it comes, the footers (end time, host count, the interrupted mark) at ``close``."""

    def __init__(
        self,
        head: ScanMeta,
        ports: Mapping[Technique, Sequence[int]],
        *,
        xml: Path | None = None,
        normal: Path | None = None,
        grepable: Path | None = None,
    ) -> None:
        from twinscan.formats import nmap_text, nmap_xml_write
        from twinscan.formats.text_report import service_names

        if len(ports) != 1:
            # one <host> element per address: a second technique's blocks come after the first's
            raise ValueError("the nmap formats stream a scan of one technique")
        self._start = head.start
        self._names = service_names()
        self._xml = _open(xml) if xml is not None else None
        self._text = {
            kind: _open(path)
            for kind, path in (("normal", normal), ("grepable", grepable))
            if path is not None
        }
        self.hosts = 0
        if self._xml is not None:
            self._xml.write(nmap_xml_write.xml_prolog(head) + nmap_xml_write.xml_head(head, ports))
        for stream in self._text.values():
            stream.write(nmap_text.header(head) + "\n")
        self._flush()

    def _streams(self) -> list[IO[str]]:
        return [s for s in (self._xml, *self._text.values()) if s is not None]

    def _flush(self) -> None:
        for stream in self._streams():
            stream.flush()

    def block(self, columns: ResultColumns) -> None:
        """Every host of a finished block (each host is in exactly one block)."""
        import datetime as dt

        from twinscan.formats import nmap_text, nmap_xml_write
        from twinscan.formats.host_rows import host_rows

        # a block's rows are sorted by host and port: its order is the canonical one
        hosts = host_rows([columns])
        if self._xml is not None:
            end = dt.datetime.now(dt.UTC)  # when this host's verdicts were all in
            for host, rows in hosts.items():
                self._xml.write(nmap_xml_write.host_xml(rows, host, self._start, end, self._names))
        for kind, stream in self._text.items():
            render = nmap_text.HOST_LINES[kind]
            for host, rows in hosts.items():
                stream.write("".join(line + "\n" for line in render(host, rows, self._names)))
        self.hosts += len(hosts)
        self._flush()

    def close(self, meta: ScanMeta) -> None:
        from twinscan.formats import nmap_text, nmap_xml_write

        if self._xml is not None:
            self._xml.write(nmap_xml_write.xml_foot(meta, self.hosts))
        for stream in self._text.values():
            stream.write(nmap_text.footer(meta, self.hosts) + "\n")
        for stream in self._streams():
            if stream is not sys.stdout:
                stream.close()
            else:
                stream.flush()
