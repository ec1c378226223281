"""A result that holds columns writes the same CSV and report as its frame, without pandas."""

from __future__ import annotations

import dataclasses
import datetime as dt
import io
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import verdicts
from twinscan.core.schema import (
    PortVerdict,
    ResultColumns,
    ScanMeta,
    ScanResult,
    category_code,
    columns_from_frame,
    conform,
    empty_frame,
    to_frame,
)
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.formats.csv import write_csv, write_result_csv
from twinscan.formats.text_report import render_text

META = ScanMeta(
    Engine.NATIVE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), dt.datetime(2026, 1, 1, 0, 0, 2, tzinfo=dt.UTC),
    "twinscan scan", "twinscan test", (Technique.SYN,),
)  # fmt: skip


#: RTTs as the engines record them: milliseconds rounded to 3 decimals (and a few beyond the
#: 4096 ms that the CSV writer's plain path takes; from 16384 ms on, float32 rounds them).
_millis = st.integers(-20_000_000, 20_000_000).map(lambda k: round(k / 1000, 3)) | st.sampled_from(
    [0.0, -0.0]  # one key to the writer's memo of texts, two texts
)


@st.composite
def columns(draw: st.DrawFn) -> ResultColumns:
    n = draw(st.integers(0, 40))
    tech = draw(st.sampled_from([Technique.SYN, Technique.UDP, Technique.CONNECT]))
    ports = draw(st.lists(st.integers(0, 65535), min_size=n, max_size=n))
    hosts = draw(st.lists(st.sampled_from(["127.0.0.1", "198.18.0.10"]), min_size=n, max_size=n))
    states = draw(st.lists(st.sampled_from(list(PortState)), min_size=n, max_size=n))
    reasons = draw(st.lists(st.sampled_from(list(Reason)), min_size=n, max_size=n))
    ttl = draw(st.none() | st.lists(st.none() | st.integers(0, 255), min_size=n, max_size=n))
    rip = draw(st.none() | st.lists(st.none() | st.just("198.18.0.1"), min_size=n, max_size=n))
    rtt = draw(
        st.none()
        | st.lists(st.none() | st.floats(0, 1e6, allow_nan=False, width=32), min_size=n, max_size=n)
        | st.lists(st.none() | _millis, min_size=n, max_size=n)
    )
    return ResultColumns(
        engine=Engine.NATIVE, technique=tech, proto=tech.proto, host=hosts, port=ports,
        state=[category_code("state", s.value) for s in states],
        reason=[category_code("reason", r.value) for r in reasons],
        reason_ttl=ttl, reason_ip=rip, rtt_ms=rtt,
    )  # fmt: skip


@settings(max_examples=150, deadline=None)
@given(columns(), st.booleans(), st.integers(1, 16))
def test_csv_from_columns_equals_csv_from_the_frame(
    cols: ResultColumns, plain: bool, chunk: int
) -> None:
    """Both ways of writing columns (plain Python for small results, numpy for large ones),
    in pieces of any size, give pandas' bytes."""
    from twinscan.formats import csv

    fast, slow = io.StringIO(), io.StringIO()
    saved = csv.PLAIN_MAX_ROWS, csv.CSV_CHUNK_ROWS
    csv.PLAIN_MAX_ROWS = saved[0] if plain else 0
    csv.CSV_CHUNK_ROWS = chunk
    try:
        write_result_csv(ScanResult(columns=cols, meta=META), fast)
    finally:
        csv.PLAIN_MAX_ROWS, csv.CSV_CHUNK_ROWS = saved
    write_csv(cols.to_frame(), slow)
    assert fast.getvalue() == slow.getvalue()


def test_rtts_past_float32_precision_are_written_as_pandas_writes_them() -> None:
    """From 16384 ms on, float32 cannot hold every millisecond value (16384.001 is written
    16384.002): the plain path must leave those to numpy."""
    rtts = [0.001, 4095.999, 4096.0, 8191.999, 16384.001, 99999.999, None]
    cols = ResultColumns(
        engine=Engine.NATIVE, technique=Technique.SYN, proto=Proto.TCP,
        host=["127.0.0.1"] * len(rtts), port=list(range(1, len(rtts) + 1)),
        state=[category_code("state", "open")] * len(rtts),
        reason=[category_code("reason", "syn-ack")] * len(rtts), rtt_ms=rtts,
    )  # fmt: skip
    for subset in (rtts[:2], rtts):
        part = dataclasses.replace(
            cols,
            host=cols.host[: len(subset)],
            port=cols.port[: len(subset)],
            state=cols.state[: len(subset)],
            reason=cols.reason[: len(subset)],
            rtt_ms=subset,
        )
        fast, slow = io.StringIO(), io.StringIO()
        write_result_csv(ScanResult(columns=part, meta=META), fast)
        write_csv(part.to_frame(), slow)
        assert fast.getvalue() == slow.getvalue()


@settings(max_examples=40, deadline=None)
@given(columns(), st.booleans())
def test_report_from_columns_equals_report_from_the_frame(
    cols: ResultColumns, closed: bool
) -> None:
    lazy = ScanResult(columns=cols, meta=META)
    built = ScanResult(frame=cols.to_frame(), meta=META)
    assert render_text(lazy, show_closed=closed) == render_text(built, show_closed=closed)


def test_frame_is_built_once_on_demand_and_can_be_replaced() -> None:
    cols = ResultColumns(
        engine=Engine.NATIVE, technique=Technique.SYN, proto=Proto.TCP, host=["127.0.0.1"],
        port=[22], state=[category_code("state", "open")], reason=[category_code("reason", "syn-ack")],
    )  # fmt: skip
    result = ScanResult(columns=cols, meta=META)
    assert result.unbuilt_columns is cols
    frame = result.frame
    assert result.frame is frame and result.unbuilt_columns is None
    result.frame = frame.iloc[:0]
    assert len(result.frame) == 0
    with pytest.raises(TypeError):
        ScanResult(meta=META)


def test_csv_path_does_not_import_pandas(tmp_path) -> None:  # type: ignore[no-untyped-def]
    code = (
        "import sys, datetime as dt\n"
        "from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult\n"
        "from twinscan.formats.csv import write_result_csv\n"
        "from twinscan.formats.text_report import render_text\n"
        "from twinscan.core.vocab import Engine, Proto, Technique\n"
        "c = ResultColumns(Engine.NATIVE, Technique.SYN, Proto.TCP, ['127.0.0.1'], [22], [0], [2])\n"
        "now = dt.datetime.now(dt.UTC)\n"
        "r = ScanResult(columns=c, meta=ScanMeta(Engine.NATIVE, now, now, '', ''))\n"
        f"write_result_csv(r, {str(tmp_path / 'o.csv')!r}); render_text(r)\n"
        "print('pandas' in sys.modules, 'numpy' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False False"  # a small result needs neither
    assert (tmp_path / "o.csv").read_text().startswith("engine,technique,host")


@settings(max_examples=60, deadline=None)
@given(st.lists(verdicts, max_size=40))
def test_frame_to_columns_and_back_is_lossless(rows: list[PortVerdict]) -> None:
    import pandas as pd

    frame = to_frame(rows)
    runs = columns_from_frame(frame)
    assert sum(len(r) for r in runs) == len(frame)
    back = pd.concat([r.to_frame() for r in runs], ignore_index=True) if runs else empty_frame()
    pd.testing.assert_frame_equal(back, frame)


def test_owner_columns_survive_the_adapter_and_reach_the_report() -> None:
    frame = to_frame(
        [PortVerdict(Engine.NATIVE, Technique.CONNECT, "127.0.0.1", Proto.TCP, p, PortState.OPEN,
                     Reason.SYN_ACK) for p in (22, 80)]
    )  # fmt: skip
    frame["pid"], frame["process"] = [7, None], ["sshd", None]
    frame = conform(frame)
    (cols,) = columns_from_frame(frame)
    assert cols.has_owners and list(cols.pid or []) == [7, None]
    assert cols.to_frame().equals(frame)
    text = render_text(ScanResult(frame=frame, meta=META))
    assert "PID/PROCESS" in text and "7/sshd" in text


@settings(max_examples=60, deadline=None)
@given(st.lists(verdicts, max_size=40), st.booleans())
def test_verdict_columns_build_the_frame_of_their_verdicts(
    rows: list[PortVerdict], one_kind: bool
) -> None:
    """One (engine, technique, proto): columns whose frame is ``to_frame`` of the verdicts;
    mixed or none: None (they need a frame)."""
    import pandas as pd

    from twinscan.core.schema import verdict_columns

    if one_kind and rows:
        first = rows[0]
        rows = [
            dataclasses.replace(
                v, engine=first.engine, technique=first.technique, proto=first.proto
            )
            for v in rows
        ]
    cols = verdict_columns(rows)
    kinds = {(v.engine, v.technique, v.proto) for v in rows}
    if len(kinds) != 1:
        assert cols is None
        return
    assert cols is not None
    pd.testing.assert_frame_equal(cols.to_frame(), to_frame(rows))


@settings(max_examples=60, deadline=None)
@given(columns())
def test_open_only_from_columns_equals_open_only_from_the_frame(cols: ResultColumns) -> None:
    """``--open`` keeps the same rows, in the same order, whether the result holds columns
    (filtered without pandas) or a frame."""
    import pandas as pd

    from twinscan.engines.job import OPEN_STATES, keep_open_result

    lazy = keep_open_result(ScanResult(columns=cols, meta=META))
    built = keep_open_result(ScanResult(frame=cols.to_frame(), meta=META))
    assert lazy.unbuilt_columns is not None  # (no frame was built to filter it)
    pd.testing.assert_frame_equal(lazy.frame, built.frame)
    assert set(lazy.frame["state"].astype(str)) <= set(OPEN_STATES)
