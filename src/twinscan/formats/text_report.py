"""Human-readable scan reports in nmap's style (pure: result in, text out).

Reads the result as ``schema.ResultColumns`` (``ScanResult.column_runs``), so a result that
still holds its columns is rendered without pandas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence, Sized
from itertools import groupby
from operator import countOf
from typing import TYPE_CHECKING, NamedTuple

from twinscan.core.schema import category_values, host_sort_key
from twinscan.core.vocab import PortState
from twinscan.core.wording import count, noun
from twinscan.formats.code_counts import count_pairs
from twinscan.request.ports import ServiceNames
from twinscan.request.ports import service_names as installed_service_names

if TYPE_CHECKING:
    from twinscan.core.schema import ResultColumns, ScanResult

#: nmap folds a state into "Not shown" when more than this many ports share it.
FOLD_THRESHOLD = 25


class Row(NamedTuple):
    port: int
    proto: str
    state: str
    reason: str
    ttl: str
    owner: str = ""


def service_names() -> ServiceNames:
    """(port, proto) -> nmap's service name, from the installed nmap-services (read lazily:
    ``request.ports.ServiceNames``)."""
    return installed_service_names()


def _owner(cols: ResultColumns, i: int) -> str:
    """``pid/process`` of row ``i`` (``?`` for what is not visible), "" where no owner is
    known."""
    pid = cols.pid[i] if cols.pid else None
    process = cols.process[i] if cols.process else None
    if pid is not None or process:
        return f"{'?' if pid is None else pid}/{process or '?'}"
    return ""


class _Part(NamedTuple):
    """Rows ``lo:hi`` of a run: consecutive rows of one host, and how many of them have each
    (state code, reason code), in the order of their first row."""

    cols: ResultColumns
    lo: int
    hi: int
    pairs: Counter[tuple[int, int]]


def _parts(runs: list[ResultColumns]) -> dict[tuple[str, str], list[_Part]]:
    """Every verdict, counted by (state, reason) code, grouped by (host, technique) in the
    order of their first row: no Python object per row."""
    groups: dict[tuple[str, str], list[_Part]] = {}
    for cols in runs:
        n = len(cols)
        _check_lengths(cols, n)
        technique = cols.technique.value
        hosts = cols.host
        if n and hosts.count(hosts[0]) == n:  # one host (a quick look at a long run)
            blocks: Iterable[tuple[str, int]] = [(hosts[0], n)]
        else:  # each run of rows of one host, and its length
            blocks = ((host, countOf(same, host)) for host, same in groupby(hosts))
        lo = 0
        for host, rows in blocks:
            hi = lo + rows
            pairs = count_pairs(cols.state, cols.reason, lo, hi)
            groups.setdefault((host, technique), []).append(_Part(cols, lo, hi, pairs))
            lo = hi
    return groups


def _check_lengths(cols: ResultColumns, n: int) -> None:
    """The columns a report reads are as long as ``port`` (as a strict ``zip`` would check)."""
    read: list[Sized | None] = [cols.host, cols.state, cols.reason, cols.reason_ttl or None]
    if cols.has_owners:
        read += [cols.pid or None, cols.process or None]
    if any(col is not None and len(col) != n for col in read):
        raise ValueError(f"columns of {cols.technique} verdicts differ in length")


def render_text(result: ScanResult, *, show_closed: bool = False) -> str:
    """One block per (host, technique): the non-closed ports like nmap, then a summary line."""
    # The result's ``ResultColumns`` (its own, or its frame's: ``ScanResult.column_runs``), so a
    # result that still holds its columns is rendered without pandas. Rows are counted by their
    # state and reason codes; a row is built only for a port that is listed (a ``-p-`` scan of
    # one host lists a few ports and folds 65,000 closed ones into one line).
    runs = result.column_runs()
    groups = _parts(runs)
    with_owner = any(c.has_owners for c in runs)
    names = service_names()
    states, reasons = category_values("state"), category_values("reason")
    lines: list[str] = []
    for host, technique in sorted(groups, key=lambda g: (host_sort_key(g[0]), g[1])):
        parts = groups[(host, technique)]
        tally = _Tally()
        for part in parts:
            proto = part.cols.proto.value
            for (state, reason), n in part.pairs.items():
                tally.add(proto, states[state], reasons[reason], n)
        hidden = _hidden(tally.ports, show_closed)
        shown = [row for part in parts for row in _shown(part, hidden, states, reasons)]
        lines.append(f"twinscan scan report for {host} ({technique} scan)")
        lines.extend(_lines(tally, hidden, shown, names, with_owner))
        lines.append("")
    hosts = len({host for host, _ in groups})
    verdicts = sum(len(cols) for cols in runs)
    elapsed = result.meta.elapsed_s
    status = " (INCOMPLETE: interrupted)" if result.meta.incomplete else ""
    lines.append(
        f"twinscan done: {count(hosts, 'IP address', 'IP addresses')}, "
        f"{count(verdicts, 'port verdict')} in {elapsed:.2f} seconds "
        f"({result.meta.engine} engine){status}"
    )
    return "\n".join(lines)


def _shown(part: _Part, hidden: set[str], states: list[str], reasons: list[str]) -> list[Row]:
    """The rows of ``part`` whose state is not folded, in row order."""
    cols, lo, hi = part.cols, part.lo, part.hi
    present = {state for state, _ in part.pairs}
    codes = {state for state in present if states[state] not in hidden}
    if not codes:
        return []
    if codes == present:
        index: Iterable[int] = range(lo, hi)
    else:  # a few listed ports among folded ones: found by the columns' own search
        index = sorted(i for code in codes for i in _positions(cols.state, code, lo, hi))
    proto = cols.proto.value
    ttls = cols.reason_ttl or None
    owners = cols.has_owners
    out = []
    for i in index:
        ttl = None if ttls is None else ttls[i]
        out.append(
            Row(
                int(cols.port[i]),
                proto,
                states[cols.state[i]],
                reasons[cols.reason[i]],
                "" if ttl is None else str(ttl),
                _owner(cols, i) if owners else "",
            )
        )
    return out


def _positions(values: Sequence[int], code: int, lo: int, hi: int) -> Iterator[int]:
    """Where ``code`` is in ``values[lo:hi]``, in order."""
    i = lo
    while True:
        try:
            i = values.index(code, i, hi)
        except ValueError:
            return
        yield i
        i += 1


class _Tally:
    """Ports of one (host, technique) per state: per reason, in the order of the reasons' first
    rows (the order ``Counter.most_common`` keeps for ties), and their protocols."""

    __slots__ = ("ports", "protos", "reasons")

    def __init__(self) -> None:
        self.ports: Counter[str] = Counter()
        self.reasons: dict[str, Counter[str]] = {}
        self.protos: dict[str, set[str]] = {}

    def add(self, proto: str, state: str, reason: str, n: int = 1) -> None:
        self.ports[state] += n
        self.reasons.setdefault(state, Counter())[reason] += n
        self.protos.setdefault(state, set()).add(proto)


def _hidden(ports: Mapping[str, int], show_closed: bool) -> set[str]:
    """The states folded into "Not shown" given the ports per state."""
    hidden: set[str] = set() if show_closed else {PortState.CLOSED.value}
    # Like nmap, fold the most common state when it has more than 25 ports.
    if not show_closed and ports:
        top, n = max(ports.items(), key=lambda kv: (kv[1], kv[0]))
        if n > FOLD_THRESHOLD:
            hidden.add(top)
    return hidden


def _lines(
    tally: _Tally,
    hidden: set[str],
    shown: list[Row],
    names: Mapping[tuple[int, str], str],
    with_owner: bool,
) -> list[str]:
    """A (host, technique)'s lines: "Not shown" per folded state, then the ``shown`` rows
    (in row order) as a table sorted by protocol and port."""
    out: list[str] = []
    for folded in sorted(hidden):
        n = tally.ports[folded]
        if n:
            reasons = ", ".join(f"{k} {r}" for r, k in tally.reasons[folded].most_common())
            protos = "/".join(sorted(tally.protos[folded]))
            out.append(f"Not shown: {n} {folded} {protos} {noun(n, 'port')} ({reasons})")
    shown = sorted(shown, key=lambda r: (r.proto, r.port))
    if not shown:
        out.append("All scanned ports are in the states above.")
        return out
    # With --owners (owner columns present), the process behind each open port, like netstat's
    # PID/Program name.
    table = [("PORT", "STATE", "SERVICE", "REASON", "PID/PROCESS")]
    for row in shown:
        ttl = f" ttl {row.ttl}" if row.ttl else ""
        service = names.get((row.port, row.proto), "unknown")
        table.append((f"{row.port}/{row.proto}", row.state, service, row.reason + ttl, row.owner))
    ncols = 5 if with_owner else 4
    widths = [max(len(r[i]) for r in table) for i in range(ncols - 1)]
    for r in table:
        head = " ".join(f"{r[i]:<{widths[i]}}" for i in range(ncols - 1))
        out.append(f"{head} {r[ncols - 1]}".rstrip() if with_owner else f"{head} {r[3]}")
    return out
