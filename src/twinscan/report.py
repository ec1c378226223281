"""Human-readable scan reports in nmap's style (pure: frame in, text out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from twinscan.ports import load_services
from twinscan.vocab import PortState

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.schema import ScanResult


def service_names() -> dict[tuple[int, str], str]:
    return {(e.port, e.proto.value): e.name for e in load_services()}


def render_text(result: ScanResult, *, show_closed: bool = False) -> str:
    """One block per (host, technique): the non-closed ports like nmap, then a summary line."""
    frame = result.frame
    names = service_names()
    lines: list[str] = []
    for (host, technique), group in frame.groupby(["host", "technique"], observed=True, sort=True):
        lines.append(f"twinscan scan report for {host} ({technique} scan)")
        lines.extend(_host_lines(group, names, show_closed))
        lines.append("")
    hosts = frame["host"].nunique()
    elapsed = result.meta.elapsed_s
    status = " (INCOMPLETE: interrupted)" if result.meta.incomplete else ""
    lines.append(
        f"twinscan done: {hosts} IP address{'es' if hosts != 1 else ''}, {len(frame)} port "
        f"verdicts in {elapsed:.2f} seconds ({result.meta.engine} engine){status}"
    )
    return "\n".join(lines)


def _host_lines(
    group: pd.DataFrame, names: dict[tuple[int, str], str], show_closed: bool
) -> list[str]:
    hidden_states = set() if show_closed else {PortState.CLOSED.value}
    # Like nmap, fold the most common state when it has more than 25 ports.
    counts = group["state"].astype(str).value_counts()
    if not show_closed and len(counts) and counts.iloc[0] > 25:
        hidden_states.add(str(counts.index[0]))
    shown = group[~group["state"].astype(str).isin(hidden_states)].sort_values(["proto", "port"])
    out: list[str] = []
    for state in sorted(hidden_states):
        part = group[group["state"].astype(str) == state]
        if len(part):
            reasons = ", ".join(
                f"{n} {r}" for r, n in part["reason"].astype(str).value_counts().items()
            )
            protos = "/".join(sorted(part["proto"].astype(str).unique()))
            out.append(f"Not shown: {len(part)} {state} {protos} ports ({reasons})")
    if shown.empty:
        out.append("All scanned ports are in the states above.")
        return out
    rows = [("PORT", "STATE", "SERVICE", "REASON")]
    for port_v, proto_v, state_v, reason_v, ttl_v in zip(
        shown["port"],
        shown["proto"],
        shown["state"],
        shown["reason"],
        shown["reason_ttl"],
        strict=True,
    ):
        port, proto = int(port_v), str(proto_v)
        ttl = "" if ttl_v is None or str(ttl_v) == "<NA>" else f" ttl {ttl_v}"
        service = names.get((port, proto), "unknown")
        rows.append((f"{port}/{proto}", str(state_v), service, str(reason_v) + ttl))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        out.append(f"{r[0]:<{widths[0]}} {r[1]:<{widths[1]}} {r[2]:<{widths[2]}} {r[3]}")
    return out
