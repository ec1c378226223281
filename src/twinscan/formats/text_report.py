"""Human-readable scan reports in nmap's style (pure: result in, text out).

Works on plain rows, so a result that still holds its columns is rendered without pandas.
"""

from __future__ import annotations

import functools
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple

from twinscan.core.schema import host_sort_key
from twinscan.core.vocab import PortState
from twinscan.core.wording import count, noun
from twinscan.request.ports import load_services

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.core.schema import ScanResult

#: nmap folds a state into "Not shown" when more than this many ports share it.
FOLD_THRESHOLD = 25


class Row(NamedTuple):
    port: int
    proto: str
    state: str
    reason: str
    ttl: str
    owner: str = ""


class _View(NamedTuple):
    """The result as parallel lists of strings (no per-port objects)."""

    host: list[str]
    technique: list[str]
    proto: list[str]
    port: list[int]
    state: list[str]
    reason: list[str]
    ttl: list[str]
    #: ``pid/process`` of the local process behind an open port (``--owners``), else "";
    #: None when the result has no owner columns.
    owner: list[str] | None = None


@functools.lru_cache(maxsize=1)
def service_names() -> dict[tuple[int, str], str]:
    """(port, proto) -> nmap's service name, from the installed nmap-services (cached)."""
    return {(e.port, e.proto.value): e.name for e in load_services()}


def _view(result: ScanResult) -> _View:
    columns = result.unbuilt_columns
    if columns is not None:
        from twinscan.core.schema import category_values

        n = len(columns)
        states, reasons = category_values("state"), category_values("reason")
        ttls = columns.reason_ttl or [None] * n
        return _View(
            host=list(columns.host),
            technique=[columns.technique.value] * n,
            proto=[columns.proto.value] * n,
            port=[int(p) for p in columns.port],
            state=[states[s] for s in columns.state],
            reason=[reasons[r] for r in columns.reason],
            ttl=["" if t is None else str(t) for t in ttls],
        )
    frame = result.frame
    return _View(
        host=[str(v) for v in frame["host"]],
        technique=[str(v) for v in frame["technique"]],
        proto=[str(v) for v in frame["proto"]],
        port=[int(v) for v in frame["port"]],
        state=[str(v) for v in frame["state"]],
        reason=[str(v) for v in frame["reason"]],
        ttl=["" if str(v) == "<NA>" else str(v) for v in frame["reason_ttl"]],
        owner=_owners(frame) if "pid" in frame.columns else None,
    )


def _owners(frame: pd.DataFrame) -> list[str]:
    """``pid/process`` per row (``?`` for what is not visible), "" where no owner is known."""
    out = []
    processes = frame["process"] if "process" in frame.columns else [None] * len(frame)
    for pid, process in zip(frame["pid"].astype("object"), processes, strict=True):
        known_pid = pid is not None and str(pid) not in ("<NA>", "nan")
        known_name = process is not None and str(process) not in ("<NA>", "nan", "")
        if known_pid or known_name:
            out.append(f"{pid if known_pid else '?'}/{process if known_name else '?'}")
        else:
            out.append("")
    return out


def render_text(result: ScanResult, *, show_closed: bool = False) -> str:
    """One block per (host, technique): the non-closed ports like nmap, then a summary line."""
    view = _view(result)
    names = service_names()
    groups: dict[tuple[str, str], list[int]] = {}
    for i, key in enumerate(zip(view.host, view.technique, strict=True)):
        groups.setdefault(key, []).append(i)
    lines: list[str] = []
    for host, technique in sorted(groups, key=lambda g: (host_sort_key(g[0]), g[1])):
        lines.append(f"twinscan scan report for {host} ({technique} scan)")
        lines.extend(_host_lines(view, groups[(host, technique)], names, show_closed))
        lines.append("")
    hosts = len(set(view.host))
    elapsed = result.meta.elapsed_s
    status = " (INCOMPLETE: interrupted)" if result.meta.incomplete else ""
    lines.append(
        f"twinscan done: {count(hosts, 'IP address', 'IP addresses')}, "
        f"{count(len(view.port), 'port verdict')} in {elapsed:.2f} seconds "
        f"({result.meta.engine} engine){status}"
    )
    return "\n".join(lines)


def _host_lines(
    view: _View, idx: list[int], names: dict[tuple[int, str], str], show_closed: bool
) -> list[str]:
    hidden: set[str] = set() if show_closed else {PortState.CLOSED.value}
    state = view.state
    counts = Counter(state[i] for i in idx)
    # Like nmap, fold the most common state when it has more than 25 ports.
    if not show_closed and counts:
        top, n = max(counts.items(), key=lambda kv: (kv[1], kv[0]))
        if n > FOLD_THRESHOLD:
            hidden.add(top)
    out: list[str] = []
    for folded in sorted(hidden):
        part = [i for i in idx if state[i] == folded]
        if part:
            reasons = ", ".join(
                f"{n} {r}" for r, n in Counter(view.reason[i] for i in part).most_common()
            )
            protos = "/".join(sorted({view.proto[i] for i in part}))
            out.append(
                f"Not shown: {len(part)} {folded} {protos} {noun(len(part), 'port')} ({reasons})"
            )
    owners = view.owner
    shown = sorted(
        (Row(view.port[i], view.proto[i], state[i], view.reason[i], view.ttl[i],
             owners[i] if owners is not None else "")
         for i in idx if state[i] not in hidden),
        key=lambda r: (r.proto, r.port),
    )  # fmt: skip
    if not shown:
        out.append("All scanned ports are in the states above.")
        return out
    # With --owners (owner columns present), the process behind each open port, like netstat's
    # PID/Program name.
    with_owner = owners is not None
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
