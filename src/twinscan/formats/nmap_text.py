"""nmap's normal (``-oN``) and grepable (``-oG``) output formats, from a scan's verdicts (pure).

Written after nmap 7.93's output.cc as it prints with ``--reason`` (twinscan always knows the
reason): a ``# Nmap ... scan initiated`` header, per host a ``Not shown:`` line for each folded
state (portlist.cc folds a non-open state with more than 25 ports of the host) and the port table
(``-oN``), or one ``Host:`` line with ``Ports:`` and ``Ignored State:`` (``-oG``), and a
``# Nmap done`` footer. Like nmap's own formats, they hold one TCP technique per file.
"""

from __future__ import annotations

import datetime as dt
from typing import IO, TYPE_CHECKING

from twinscan.formats.host_rows import HostRows, Row, host_rows

if TYPE_CHECKING:
    from twinscan.core.schema import ScanMeta, ScanResult
    from twinscan.request.ports import ServiceNames


def _stamp(when: dt.datetime) -> str:
    # nmap: "Mon Nov 30 16:41:39 2026" (ctime without the newline), in local time.
    return when.astimezone().strftime("%a %b %d %H:%M:%S %Y")


def _scanner(meta: ScanMeta) -> str:
    return "Nmap" if meta.engine.value == "nmap" else "twinscan"


def header(meta: ScanMeta) -> str:
    """The ``# ... scan initiated`` line, as both formats start."""
    # engine_version reads "twinscan 0.1.0" or "nmap 7.93": nmap writes "# Nmap 7.93 scan ..."
    version = meta.engine_version.split(" ", 1)[-1]
    return f"# {_scanner(meta)} {version} scan initiated {_stamp(meta.start)} as: {meta.arguments}"


def footer(meta: ScanMeta, hosts: int) -> str:
    """The ``# ... done`` line, as both formats end (interrupted: marked INCOMPLETE)."""
    scanner = _scanner(meta)
    addresses = f"{hosts} IP address{'es' if hosts != 1 else ''}"
    up = f"{hosts} host{'s' if hosts != 1 else ''} up"
    note = " (INCOMPLETE: interrupted)" if meta.incomplete else ""
    return (
        f"# {scanner} done at {_stamp(meta.end)} -- {addresses} ({up}) scanned in "
        f"{meta.elapsed_s:.2f} seconds{note}"
    )


def _order(rows: list[Row]) -> list[Row]:
    # nmap lists TCP before UDP, each by port number.
    return sorted(rows, key=lambda r: (r[1] != "tcp", r[1], r[0]))


def normal_host(host: str, rows: HostRows, names: ServiceNames) -> list[str]:
    """One host's ``-oN`` lines (the report, ``Not shown:``, the port table, a blank line)."""
    shown = _order(rows.listed)
    lines = [f"Nmap scan report for {host}", "Host is up, received user-set."]
    if not shown:
        lines.append(f"All {rows.total} scanned ports on {host} are in ignored states.")
    parts = []
    for state in sorted(rows.folded):
        groups = rows.folded[state]
        for proto in ("tcp", "udp"):
            # (reason, ports) by count, ties in the order of their first rows (most_common's)
            reasons = sorted(
                ((r, len(ports)) for (r, p), ports in groups.items() if p == proto),
                key=lambda rn: rn[1],
                reverse=True,
            )
            if reasons:
                why = ", ".join(r if len(reasons) == 1 else f"{n} {r}" for r, n in reasons)
                parts.append(f"{sum(n for _, n in reasons)} {state} {proto} ports ({why})")
    if parts:
        lines.append("Not shown: " + ", ".join(parts))
    if shown:
        table = [("PORT", "STATE", "SERVICE", "REASON")]
        for port, proto, state, reason, ttl, _ in shown:
            service = names.get((port, proto), "unknown")
            # nmap prints no ttl for a connect scan's verdicts (their reason_ttl is 0)
            table.append(
                (f"{port}/{proto}", state, service, reason + (f" ttl {ttl}" if ttl else ""))
            )
        widths = [max(len(r[i]) for r in table) for i in range(3)]
        for r in table:
            lines.append(f"{r[0]:<{widths[0]}} {r[1]:<{widths[1]}} {r[2]:<{widths[2]}} {r[3]}")
    lines.append("")
    return lines


def grepable_host(host: str, rows: HostRows, names: ServiceNames) -> list[str]:
    """One host's ``-oG`` lines (its status and one ``Host:`` line with every listed port)."""
    ports = ", ".join(
        f"{port}/{state}/{proto}//{names.get((port, proto), '')}///"
        for port, proto, state, _, _, _ in _order(rows.listed)
    )
    line = f"Host: {host} ()\tPorts: {ports}"
    if rows.folded:
        # nmap names only the most common ignored state.
        state = max(rows.folded, key=lambda s: (rows.counts[s], s))
        line += f"\tIgnored State: {state} ({rows.counts[state]})"
    return [f"Host: {host} ()\tStatus: Up", line]


#: one host's lines in each format.
HOST_LINES = {"normal": normal_host, "grepable": grepable_host}


def nmap_text(result: ScanResult, kind: str) -> str:
    """The result in nmap's ``-oN`` (``kind`` "normal") or ``-oG`` ("grepable") format: the
    lines the streaming writer appends host by host."""
    from twinscan.formats.text_report import service_names

    names = service_names()
    render = HOST_LINES[kind]
    hosts = host_rows(result.column_runs())
    lines = [header(result.meta)]
    for host, rows in hosts.items():
        lines.extend(render(host, rows, names))
    lines.append(footer(result.meta, len(hosts)))
    return "\n".join(lines) + "\n"


def normal_text(result: ScanResult) -> str:
    """The result in nmap's ``-oN`` format."""
    return nmap_text(result, "normal")


def grepable_text(result: ScanResult) -> str:
    """The result in nmap's ``-oG`` format (one ``Host:`` line with every listed port)."""
    return nmap_text(result, "grepable")


def write_text(text: str, dest: str | IO[str]) -> None:
    if isinstance(dest, str):
        with open(dest, "w", encoding="utf-8", newline="\n") as fh:
            fh.write(text)
    else:
        dest.write(text)
