"""Human-readable scan reports in nmap's style (pure: result in, text out).

Reads the result as ``schema.ResultColumns`` (``ScanResult.column_runs``), so a result that
still holds its columns is rendered without pandas.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, NamedTuple

from twinscan.core.schema import category_values, host_sort_key
from twinscan.core.vocab import PortState
from twinscan.core.wording import count, noun
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


#: ``Row``'s fields as a plain tuple: one per port (a NamedTuple per port costs twice as much).
_Cells = tuple[int, str, str, str, str, str]
_PROTO: Final = 1
_STATE: Final = 2
_REASON: Final = 3
assert Row._fields[_PROTO : _REASON + 1] == ("proto", "state", "reason")


def _rows(runs: list[ResultColumns]) -> dict[tuple[str, str], list[_Cells]]:
    """Every verdict as ``Row`` fields, grouped by (host, technique), in row order."""
    states, reasons = category_values("state"), category_values("reason")
    groups: dict[tuple[str, str], list[_Cells]] = {}
    for cols in runs:
        n = len(cols)
        technique, proto = cols.technique.value, cols.proto.value
        ttls = ["" if t is None else str(t) for t in cols.reason_ttl or [None] * n]
        owners = _owners(cols) if cols.has_owners else [""] * n
        names = [states[s] for s in cols.state]
        whys = [reasons[r] for r in cols.reason]
        for host, port, state, reason, ttl, owner in zip(
            cols.host, cols.port, names, whys, ttls, owners, strict=True
        ):
            row = (int(port), proto, state, reason, ttl, owner)
            groups.setdefault((host, technique), []).append(row)
    return groups


def _owners(cols: ResultColumns) -> list[str]:
    """``pid/process`` per row (``?`` for what is not visible), "" where no owner is known."""
    n = len(cols)
    out = []
    for pid, process in zip(cols.pid or [None] * n, cols.process or [None] * n, strict=True):
        if pid is not None or process:
            out.append(f"{'?' if pid is None else pid}/{process or '?'}")
        else:
            out.append("")
    return out


def render_text(result: ScanResult, *, show_closed: bool = False) -> str:
    """One block per (host, technique): the non-closed ports like nmap, then a summary line."""
    # The result's ``ResultColumns`` (its own, or its frame's: ``ScanResult.column_runs``), so a
    # result that still holds its columns is rendered without pandas.
    runs = result.column_runs()
    groups = _rows(runs)
    with_owner = any(c.has_owners for c in runs)
    names = service_names()
    lines: list[str] = []
    for host, technique in sorted(groups, key=lambda g: (host_sort_key(g[0]), g[1])):
        lines.append(f"twinscan scan report for {host} ({technique} scan)")
        lines.extend(_host_lines(groups[(host, technique)], names, show_closed, with_owner))
        lines.append("")
    hosts = len({host for host, _ in groups})
    verdicts = sum(len(rows) for rows in groups.values())
    elapsed = result.meta.elapsed_s
    status = " (INCOMPLETE: interrupted)" if result.meta.incomplete else ""
    lines.append(
        f"twinscan done: {count(hosts, 'IP address', 'IP addresses')}, "
        f"{count(verdicts, 'port verdict')} in {elapsed:.2f} seconds "
        f"({result.meta.engine} engine){status}"
    )
    return "\n".join(lines)


def _host_lines(
    rows: list[_Cells], names: Mapping[tuple[int, str], str], show_closed: bool, with_owner: bool
) -> list[str]:
    hidden: set[str] = set() if show_closed else {PortState.CLOSED.value}
    counts = Counter(row[_STATE] for row in rows)
    # Like nmap, fold the most common state when it has more than 25 ports.
    if not show_closed and counts:
        top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if n > FOLD_THRESHOLD:
            hidden.add(top)
    out: list[str] = []
    for folded in sorted(hidden):
        part = [row for row in rows if row[_STATE] == folded]
        if part:
            reasons = ", ".join(
                f"{n} {r}" for r, n in Counter(r[_REASON] for r in part).most_common()
            )
            protos = "/".join(sorted({row[_PROTO] for row in part}))
            out.append(
                f"Not shown: {len(part)} {folded} {protos} {noun(len(part), 'port')} ({reasons})"
            )
    shown = sorted(
        (Row._make(r) for r in rows if r[_STATE] not in hidden), key=lambda r: (r.proto, r.port)
    )
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
