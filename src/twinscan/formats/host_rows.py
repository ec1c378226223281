"""Each host's verdicts as nmap's formats print them, from ``schema.ResultColumns`` (no pandas).

nmap's ``-oX``, ``-oN`` and ``-oG`` are written host by host, and for a ``-p-`` host nearly
every row is folded into a count (``<extraports>``, ``Not shown:``). Building a pandas frame to
group 65535 rows cost more than the scan (the whole-result ``-oX`` of a loopback ``-sS -p-``
took 0.9 s against 0.06 s for the CSV of the same verdicts). Here the rows are counted by their
codes first, and a row becomes a tuple only when it is listed; a folded row only adds its port
to its group's list.
"""

from __future__ import annotations

import itertools
import operator
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import NamedTuple

from twinscan.core.schema import ResultColumns, category_values, host_sort_key
from twinscan.core.vocab import PortState
from twinscan.formats.code_counts import as_bytes, others

#: nmap folds a state into one count when a host has more ports than this in it
#: (portlist.cc ``isIgnoredState``), except the states it never folds.
FOLD_ABOVE = 25
NEVER_FOLDED = frozenset({PortState.OPEN.value})

#: One listed verdict of a host: (port, proto, state, reason, reason_ttl, reason_ip).
Row = tuple[int, str, str, str, int | None, str | None]


class HostRows(NamedTuple):
    """One host's verdicts: the listed rows, and the folded ones as ports per group."""

    #: rows of the states not folded, in the result's order (or ``sort_frame``'s)
    listed: list[Row]
    #: folded state -> (reason, proto) -> ports, groups in the order of their first rows
    folded: dict[str, dict[tuple[str, str], list[int]]]
    #: rows per state, all of them
    counts: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def host_rows(runs: Iterable[ResultColumns], *, canonical: bool = False) -> dict[str, HostRows]:
    """Every host's verdicts, hosts in address order (``host_sort_key``).

    The listed rows keep the order of ``runs`` and of their rows (the order of the result's
    frame), or with ``canonical`` the order of ``schema.sort_frame``: by engine, technique and
    protocol, then port. A folded group lists its ports in either order."""
    states, reasons = category_values("state"), category_values("reason")
    # each run with its runs of one host, found once for the counting and the rows
    pieces = [(cols, host_spans(cols)) for cols in runs if len(cols)]
    codes: dict[str, Counter[int]] = {}
    for cols, spans in pieces:
        if spans is not None:  # (counting codes, not tuples: a C pass per distinct state)
            for host, lo, hi in spans:
                column = as_bytes(cols.state, lo, hi) or list(cols.state[lo:hi])
                counted = {s: column.count(s) for s in set(column)}
                codes.setdefault(host, Counter()).update(counted)
            continue
        for (host, state), n in Counter(zip(cols.host, cols.state, strict=True)).items():
            codes.setdefault(host, Counter())[state] += n
    out: dict[str, HostRows] = {}
    fold: dict[str, set[int]] = {}
    for host in sorted(codes, key=host_sort_key):
        counts = Counter({states[s]: n for s, n in codes[host].items()})
        fold[host] = {
            s for s, n in codes[host].items() if n > FOLD_ABOVE and states[s] not in NEVER_FOLDED
        }
        out[host] = HostRows([], {states[s]: {} for s in fold[host]}, counts)
    if canonical:  # stable: equal keys keep their order, as sort_frame does
        pieces.sort(key=lambda piece: _run_key(piece[0]))
    for _, group in itertools.groupby(
        pieces, key=lambda piece: _run_key(piece[0]) if canonical else id(piece[0])
    ):
        listed: dict[str, list[Row]] = {}
        for cols, spans in group:
            _add(out, listed, fold, cols, spans, states, reasons)
        for host, rows in listed.items():
            if canonical:
                rows.sort(key=_port)
            out[host].listed.extend(rows)
    return out


def _run_key(cols: ResultColumns) -> tuple[str, str, str]:
    return (cols.engine.value, cols.technique.value, cols.proto.value)


def _port(row: Row) -> int:
    return row[0]


#: rows per run of one host, on average, below which ``host_spans`` gives up
_MIN_SPAN = 64


def host_spans(cols: ResultColumns) -> list[tuple[str, int, int]] | None:
    """The runs of consecutive rows of one host, as (host, first row, end): one for a scan of
    one target, one per host for a block of several (the engines sort by host, then port).
    None when the hosts are interleaved (runs of fewer than ``_MIN_SPAN`` rows on average),
    where a pass per run would cost more than a tuple per row."""
    hosts = cols.host
    n = len(hosts)
    if n and list(hosts).count(hosts[0]) == n:  # (one host: a C pass)
        return [(hosts[0], 0, n)]
    most = n // _MIN_SPAN
    spans: list[tuple[str, int, int]] = []
    lo = 0
    for host, same in itertools.groupby(hosts):  # (the run's length: counted in C)
        if len(spans) >= most:
            return None
        hi = lo + operator.countOf(same, host)
        spans.append((host, lo, hi))
        lo = hi
    return spans


def _add(
    out: dict[str, HostRows],
    listed: dict[str, list[Row]],
    fold: dict[str, set[int]],
    cols: ResultColumns,
    spans: list[tuple[str, int, int]] | None,
    states: Sequence[str],
    reasons: Sequence[str],
) -> None:
    """One run's rows: folded ones' ports into their groups, the others into ``listed``
    (``spans``: the run's ``host_spans``)."""
    if spans is not None:  # each host's rows in one piece: a pass per piece
        for host, lo, hi in spans:
            part = cols.span(lo, hi)
            _add_one_host(out[host], listed.setdefault(host, []), fold[host], part, states, reasons)
        return
    proto = cols.proto.value
    keys = list(zip(cols.host, cols.state, cols.reason, strict=True))
    # one list per folded (host, state, reason), met in the order of its first row
    groups: dict[tuple[str, int, int], list[int]] = {}
    for key in Counter(keys):
        host, state, reason = key
        if state in fold[host]:
            by_group = out[host].folded[states[state]]
            groups[key] = by_group.setdefault((reasons[reason], proto), [])
    kept: list[int] = []
    get = groups.get
    for i, (port, key) in enumerate(zip(cols.port, keys, strict=True)):
        ports = get(key)
        if ports is None:
            kept.append(i)
        else:
            ports.append(port)
    if not kept:
        return
    n = len(cols)
    ttls = cols.reason_ttl if cols.reason_ttl is not None else [None] * n
    ips = cols.reason_ip if cols.reason_ip is not None else [None] * n
    for i in kept:
        host, state, reason = keys[i]
        row = (int(cols.port[i]), proto, states[state], reasons[reason], ttls[i], ips[i])
        listed.setdefault(host, []).append(row)


def _add_one_host(
    out: HostRows,
    listed: list[Row],
    fold: set[int],
    cols: ResultColumns,
    states: Sequence[str],
    reasons: Sequence[str],
) -> None:
    """``_add`` for a run of one host, a pass per folded state instead of a tuple per row."""
    proto = cols.proto.value
    state, reason, port = cols.state, cols.reason, cols.port
    n = len(cols)
    if len(fold) == 1:
        # One folded state, as a -p- host's closed ports: find the few other rows, and the
        # folded ones are every row but those (a copy and a few deletions)
        (code,) = fold
        codes = as_bytes(state)
        kept = None if codes is None else others(codes, code, _FEW)
        if kept is not None and len(kept) < n:
            why, ports = list(reason), list(port)
            for i in reversed(kept):
                del why[i], ports[i]
            _group(out.folded[states[code]], why, ports, proto, reasons)
            _list(listed, kept, cols, states, reasons)
            return
    # (compress and map keep the per-row work in C: a -p- host's three passes 27 -> 8 ms)
    for code in fold:
        why = list(itertools.compress(reason, map(code.__eq__, state)))
        if not why:  # (folded for the rows of the host's other runs)
            continue
        ports = list(itertools.compress(port, map(code.__eq__, state)))
        _group(out.folded[states[code]], why, ports, proto, reasons)
    rest = itertools.compress(range(n), map(operator.not_, map(fold.__contains__, state)))
    _list(listed, rest if fold else range(n), cols, states, reasons)


#: at most this many unfolded rows are taken out of a copy of the columns (each a deletion)
_FEW = 64


def _group(
    groups: dict[tuple[str, str], list[int]],
    why: list[int],
    ports: list[int],
    proto: str,
    reasons: Sequence[str],
) -> None:
    """A folded state's rows (their reasons and ports) into its groups, in row order."""
    if why.count(why[0]) == len(why):  # one reason: one group
        groups.setdefault((reasons[why[0]], proto), []).extend(ports)
        return
    for r, p in zip(why, ports, strict=True):
        groups.setdefault((reasons[r], proto), []).append(p)


def _list(
    listed: list[Row],
    rows: Iterable[int],
    cols: ResultColumns,
    states: Sequence[str],
    reasons: Sequence[str],
) -> None:
    """The rows numbered ``rows`` as listed rows."""
    n = len(cols)
    ttls = cols.reason_ttl if cols.reason_ttl is not None else [None] * n
    ips = cols.reason_ip if cols.reason_ip is not None else [None] * n
    proto, state, reason, port = cols.proto.value, cols.state, cols.reason, cols.port
    for i in rows:
        listed.append((int(port[i]), proto, states[state[i]], reasons[reason[i]], ttls[i], ips[i]))
