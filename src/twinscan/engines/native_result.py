"""Turn the connect and bounce engines' per-port outcomes into a schema ``ScanResult``.

Hands over ``schema.ResultColumns``: no Python object per port (65535 ``PortVerdict`` objects
would cost more than the scan of a loopback port range), and the frame is built on first use.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from twinscan import __version__
from twinscan.core.rules import Verdict
from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult, category_code, host_sort_key
from twinscan.core.vocab import Engine, PortState, Reason, Technique
from twinscan.request.model import ScanRequest

#: (host, port, state, reason, rtt_ms), state and reason as their string values: how the connect
#: and bounce loops collect outcomes (and forked workers send them: plain tuples pickle ten
#: times faster than dataclasses). Not a result shape: ``build_result`` turns them straight
#: into ``schema.ResultColumns``, the one columns type.
Row = tuple[str, int, str, str, float | None]


def row(host: str, port: int, verdict: Verdict, rtt_ms: float | None) -> Row:
    return (host, port, verdict.state.value, verdict.reason.value, rtt_ms)


def rows_columns(technique: Technique, rows: Iterable[Row]) -> ResultColumns:
    """``rows`` as ``ResultColumns`` sorted by (host address, port)."""
    rows = list(rows)
    rank = {h: i for i, h in enumerate(sorted({r[0] for r in rows}, key=host_sort_key))}
    ordered = sorted(rows, key=lambda r: (rank[r[0]], r[1]))
    state_codes = {s.value: category_code("state", s.value) for s in PortState}
    reason_codes = {r.value: category_code("reason", r.value) for r in Reason}
    return ResultColumns(
        engine=Engine.NATIVE,
        technique=technique,
        proto=technique.proto,
        host=[r[0] for r in ordered],
        port=[r[1] for r in ordered],
        state=[state_codes[r[2]] for r in ordered],
        reason=[reason_codes[r[3]] for r in ordered],
        rtt_ms=[r[4] for r in ordered],
    )


def build_result(
    request: ScanRequest,
    technique: Technique,
    rows: Iterable[Row],
    *,
    started: dt.datetime,
    incomplete: bool = False,
) -> ScanResult:
    columns = rows_columns(technique, rows)
    meta = ScanMeta(
        engine=Engine.NATIVE,
        start=started,
        end=dt.datetime.now(dt.UTC),
        arguments=" ".join(request.argv),
        engine_version=f"twinscan {__version__}",
        techniques=(technique,),
        incomplete=incomplete,
    )
    return ScanResult(columns=columns, meta=meta)
