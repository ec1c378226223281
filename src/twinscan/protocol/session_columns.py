"""A raw scan session's verdicts as columns: what ``schema.frame_from_columns`` takes.

Split out of ``raw_session`` (result columns are not the session's pacing business); the
session's ``columns()`` and ``verdicts()`` call ``probe_columns`` and ``column_rows``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Protocol

from twinscan.core.rules import Verdict
from twinscan.core.schema import PortVerdict, category_code, host_sort_key
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique


class _Probe(Protocol):
    host: int
    port: int
    verdict: Verdict | None
    ttl: int | None
    reason_ip: str | None
    rtt: float | None


@dataclasses.dataclass(slots=True)
class VerdictColumns:
    """A session's verdicts as parallel lists (state/reason as schema categorical codes)."""

    host: list[str]
    port: list[int]
    state: list[int]
    reason: list[int]
    reason_ttl: list[int | None]
    reason_ip: list[str | None]
    rtt_ms: list[float | None]


def probe_columns(probes: Sequence[_Probe], addrs: Sequence[str]) -> VerdictColumns:
    """Every probe with a verdict, column by column, sorted by (host address, port): no
    Python object per port beyond the values."""
    by_addr = sorted(range(len(addrs)), key=lambda i: host_sort_key(addrs[i]))
    rank = {i: r for r, i in enumerate(by_addr)}
    done = [p for p in probes if p.verdict is not None]
    done.sort(key=lambda p: (rank[p.host] << 16) | p.port)
    codes = {
        v: (category_code("state", v.state.value), category_code("reason", v.reason.value))
        for v in {p.verdict for p in done}
        if v is not None
    }
    pairs = [codes[p.verdict] for p in done if p.verdict is not None]
    return VerdictColumns(
        host=[addrs[p.host] for p in done],
        port=[p.port for p in done],
        state=[c[0] for c in pairs],
        reason=[c[1] for c in pairs],
        reason_ttl=[p.ttl for p in done],
        reason_ip=[p.reason_ip for p in done],
        rtt_ms=[None if p.rtt is None else round(p.rtt * 1000, 3) for p in done],
    )


def column_rows(cols: VerdictColumns, technique: Technique) -> list[PortVerdict]:
    """``cols`` as ``PortVerdict`` rows, in the same order."""
    proto = Proto.UDP if technique is Technique.UDP else Proto.TCP
    states = list(PortState)
    reasons = list(Reason)
    return [
        PortVerdict(
            engine=Engine.NATIVE,
            technique=technique,
            host=host,
            proto=proto,
            port=port,
            state=states[st],
            reason=reasons[rs],
            reason_ttl=ttl,
            reason_ip=rip,
            rtt_ms=rtt,
        )
        for host, port, st, rs, ttl, rip, rtt in zip(
            cols.host,
            cols.port,
            cols.state,
            cols.reason,
            cols.reason_ttl,
            cols.reason_ip,
            cols.rtt_ms,
            strict=True,
        )
    ]


def merge_columns(parts: Sequence[VerdictColumns]) -> VerdictColumns:
    """Several sessions' columns as one, sorted by (host address, port) like ``columns()``."""
    if len(parts) == 1:
        return parts[0]
    import numpy as np

    joined = VerdictColumns([], [], [], [], [], [], [])
    names = [f.name for f in dataclasses.fields(VerdictColumns)]
    for part in parts:
        for name in names:
            getattr(joined, name).extend(getattr(part, name))
    rank = {h: r for r, h in enumerate(sorted(set(joined.host), key=host_sort_key))}
    key = np.array([rank[h] for h in joined.host], dtype=np.int64) << 16
    key |= np.asarray(joined.port, dtype=np.int64)
    order = np.argsort(key, kind="stable").tolist()
    return VerdictColumns(*([col[i] for i in order] for col in map(joined.__getattribute__, names)))
