"""Each host's verdicts as nmap's formats print them, from ``schema.ResultColumns`` (no pandas).

nmap's ``-oX``, ``-oN`` and ``-oG`` are written host by host, and for a ``-p-`` host nearly
every row is folded into a count (``<extraports>``, ``Not shown:``). Building a pandas frame to
group 65535 rows cost more than the scan (the whole-result ``-oX`` of a loopback ``-sS -p-``
took 0.9 s against 0.06 s for the CSV of the same verdicts); these rows are plain tuples made
in one pass over the columns.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from twinscan.core.schema import ResultColumns, category_values, host_sort_key

#: One verdict of a host: (port, proto, state, reason, reason_ttl, reason_ip).
Row = tuple[int, str, str, str, int | None, str | None]


def host_rows(runs: Iterable[ResultColumns], *, canonical: bool = False) -> dict[str, list[Row]]:
    """Every host's rows, hosts in address order (``host_sort_key``).

    A host's rows keep the order of ``runs`` and of their rows (the order of the result's
    frame), or with ``canonical`` the order of ``schema.sort_frame``: by engine, technique and
    protocol, then port."""
    states, reasons = category_values("state"), category_values("reason")
    runs = list(runs)
    if canonical:
        runs.sort(key=_run_key)  # stable: equal keys keep their order, as sort_frame does
    out: dict[str, list[Row]] = {}
    for _, group in itertools.groupby(runs, key=_run_key if canonical else id):
        per_host: dict[str, list[Row]] = {}
        for cols in group:
            _add(per_host, cols, states, reasons)
        for host, rows in per_host.items():
            if canonical:
                rows.sort(key=_port)
            out.setdefault(host, []).extend(rows)
    return dict(sorted(out.items(), key=lambda kv: host_sort_key(kv[0])))


def _run_key(cols: ResultColumns) -> tuple[str, str, str]:
    return (cols.engine.value, cols.technique.value, cols.proto.value)


def _port(row: Row) -> int:
    return row[0]


def _add(
    out: dict[str, list[Row]], cols: ResultColumns, states: Sequence[str], reasons: Sequence[str]
) -> None:
    proto = cols.proto.value
    n = len(cols)
    ttls = cols.reason_ttl if cols.reason_ttl is not None else itertools.repeat(None, n)
    ips = cols.reason_ip if cols.reason_ip is not None else itertools.repeat(None, n)
    last_host: str | None = None
    rows: list[Row] = []
    for host, port, state, reason, ttl, ip in zip(
        cols.host, cols.port, cols.state, cols.reason, ttls, ips, strict=True
    ):
        if host != last_host:  # a host's rows are usually one run: one lookup per run
            rows = out.setdefault(host, [])
            last_host = host
        rows.append((int(port), proto, states[state], reasons[reason], ttl, ip))
