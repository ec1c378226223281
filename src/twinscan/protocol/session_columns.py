"""A raw scan session's verdicts as ``ResultColumns``, the one columns type of every engine.

Split out of ``raw_session`` (result columns are not the session's pacing business); the
session's ``columns()`` and ``verdicts()`` call ``probe_columns`` and ``column_rows``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from twinscan.core.rules import Verdict
from twinscan.core.schema import PortVerdict, ResultColumns, category_code, host_sort_key
from twinscan.core.vocab import Engine, PortState, Reason, Technique


class _Probe(Protocol):
    host: int
    port: int
    verdict: Verdict | None
    ttl: int | None
    reason_ip: str | None
    rtt: float | None


def probe_columns(
    probes: Sequence[_Probe], addrs: Sequence[str], technique: Technique
) -> ResultColumns:
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
    return ResultColumns(
        engine=Engine.NATIVE,
        technique=technique,
        proto=technique.proto,
        host=[addrs[p.host] for p in done],
        port=[p.port for p in done],
        state=[c[0] for c in pairs],
        reason=[c[1] for c in pairs],
        reason_ttl=[p.ttl for p in done],
        reason_ip=[p.reason_ip for p in done],
        rtt_ms=[None if p.rtt is None else round(p.rtt * 1000, 3) for p in done],
    )


def column_rows(cols: ResultColumns) -> list[PortVerdict]:
    """``cols`` as ``PortVerdict`` rows, in the same order."""
    states = list(PortState)
    reasons = list(Reason)
    n = len(cols)
    return [
        PortVerdict(
            engine=cols.engine,
            technique=cols.technique,
            host=host,
            proto=cols.proto,
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
            cols.reason_ttl or [None] * n,
            cols.reason_ip or [None] * n,
            cols.rtt_ms or [None] * n,
            strict=True,
        )
    ]
