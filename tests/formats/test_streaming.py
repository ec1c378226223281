"""Streaming writers and Parquet: what a streamed scan writes equals the whole-result writers'.

Loopback connect scans (no privileges): a scan large enough to stream (two host blocks) is
written block by block to CSV, JSON lines, Parquet and the text report, and read back equal
to the in-memory scan's verdicts; the Parquet directory is read by pandas, dask.dataframe
and twinscan's readers with the schema's dtypes.
"""

from __future__ import annotations

import datetime as dt
import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.schema import (
    COLUMNS,
    ResultColumns,
    ScanMeta,
    ScanResult,
    category_code,
    dtypes,
    host_sort_key,
)
from twinscan.core.vocab import Engine, Proto, Technique
from twinscan.engines import streamed
from twinscan.formats.csv import read_csv
from twinscan.formats.jsonl import read_jsonl
from twinscan.formats.parquet import read_parquet
from twinscan.formats.streaming import StreamWriters
from twinscan.request.build import build_request

TWINSCAN = [sys.executable, "-m", "twinscan"]


def _cells(frame: pd.DataFrame) -> list[tuple[str, ...]]:
    cols = ["technique", "host", "proto", "port", "state", "reason", "iana_range"]
    return [tuple(map(str, row)) for row in frame[cols].itertuples(index=False, name=None)]


def test_host_blocks_bound_the_probes() -> None:
    request = build_request(targets=["127.0.0.1-5"], techniques=(Technique.CONNECT,), ports="-")
    assert streamed.host_blocks(request, Technique.CONNECT) == [
        (f"127.0.0.{i}",) for i in range(1, 6)
    ]
    small = build_request(targets=["127.0.0.1-5"], techniques=(Technique.CONNECT,), ports="1-100")
    assert streamed.host_blocks(small, Technique.CONNECT) == [small.targets]
    assert not streamed.streams(small) and streamed.streams(request)
    one_block = build_request(targets=["127.0.0.1"], techniques=(Technique.SYN,), ports="-")
    assert not streamed.streams(one_block)  # 65535 probes, but one block: held whole
    two = build_request(targets=["127.0.0.1"], techniques=(Technique.SYN, Technique.FIN), ports="-")
    assert streamed.streams(two)  # one block per technique: the first is written, then freed


def _block(host: str, ports: list[int]) -> ResultColumns:
    return ResultColumns(
        Engine.NATIVE,
        Technique.SYN,
        Technique.SYN.proto,
        host=[host] * len(ports),
        port=ports,
        state=[category_code("state", "closed")] * len(ports),
        reason=[category_code("reason", "reset")] * len(ports),
        reason_ttl=[64] * len(ports),
        reason_ip=[None] * len(ports),
        rtt_ms=[0.25] * len(ports),
    )


def test_writers_append_blocks_and_mark_incomplete(tmp_path: Path) -> None:
    import datetime as dt

    writers = StreamWriters(
        csv=tmp_path / "s.csv", json_path=tmp_path / "s.jsonl", parquet=tmp_path / "pq"
    )
    writers.block(_block("127.0.0.1", list(range(1, 40))))
    writers.block(_block("127.0.0.2", [7]))
    now = dt.datetime.now(dt.UTC)
    meta = ScanMeta(Engine.NATIVE, now, now, "twinscan scan", "twinscan", (Technique.SYN,), True)
    writers.close(meta)
    with pytest.warns(UserWarning, match="incomplete"):
        from_csv = read_csv(tmp_path / "s.csv")
    with pytest.warns(UserWarning, match="incomplete"):
        from_json = read_jsonl(tmp_path / "s.jsonl")
    with pytest.warns(UserWarning, match="incomplete"):
        from_parquet = read_parquet(tmp_path / "pq")
    assert len(from_csv) == 40
    pd.testing.assert_frame_equal(from_csv, from_json)
    pd.testing.assert_frame_equal(from_csv, from_parquet)
    report = writers.report(meta)
    assert "Not shown: 39 closed tcp ports (39 reset)" in report
    assert report.endswith("(native engine) (INCOMPLETE: interrupted)")


def test_parquet_keeps_the_schema_dtypes_for_pandas_and_dask(tmp_path: Path) -> None:
    import dask.dataframe as dd

    writers = StreamWriters(parquet=tmp_path / "pq", report=False)
    writers.block(_block("127.0.0.1", [1, 2, 3]))
    writers.block(_block("127.0.0.2", [4]))
    import datetime as dt

    now = dt.datetime.now(dt.UTC)
    writers.close(ScanMeta(Engine.NATIVE, now, now, "", "twinscan", (Technique.SYN,)))
    files = sorted(
        p.relative_to(tmp_path / "pq").as_posix() for p in (tmp_path / "pq").rglob("*.parquet")
    )
    assert files == ["syn/block-000000.parquet", "syn/block-000001.parquet"]
    plain = pd.read_parquet(tmp_path / "pq")
    assert list(plain.columns) == list(COLUMNS)
    assert plain["port"].dtype == "uint16"
    assert isinstance(plain["state"].dtype, pd.CategoricalDtype)
    lazy = dd.read_parquet(tmp_path / "pq")
    assert len(lazy) == 4 and str(lazy.dtypes["port"]) == "uint16"
    frame = read_parquet(tmp_path / "pq")
    assert {c: str(t) for c, t in frame.dtypes.items()} == {
        c: str(t) for c, t in dtypes().items() if c in COLUMNS
    }


def test_streamed_scan_equals_the_in_memory_scan(tmp_path: Path) -> None:
    """Two host blocks of 40000 ports (streamed) against the same scan held in memory."""
    scan = ["scan", "-sT", "-p", "1-40000", "127.0.0.1-2"]
    request = build_request(
        targets=["127.0.0.1-2"], techniques=(Technique.CONNECT,), ports="1-40000"
    )
    assert streamed.streams(request)
    out = subprocess.run(
        [*TWINSCAN, *scan, "--csv", str(tmp_path / "s.csv"), "--json", str(tmp_path / "s.jsonl")]
        + ["--parquet", str(tmp_path / "pq")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stderr
    from twinscan.engines import run_scan
    from twinscan.formats.text_report import render_text

    whole = run_scan(request, Engine.NATIVE)
    want = _cells(whole.frame)
    assert len(want) == 80000
    assert _cells(read_csv(tmp_path / "s.csv")) == want  # same rows, same order
    assert _cells(read_jsonl(tmp_path / "s.jsonl")) == want
    assert _cells(read_parquet(tmp_path / "pq")) == want
    report = out.stderr.strip().splitlines()
    assert report[:-1] == render_text(whole).splitlines()[:-1]
    assert report[-1].startswith("twinscan done: 2 IP addresses, 80000 port verdicts in ")
    stdout = subprocess.run(
        [*TWINSCAN, *scan, "--csv", "-"], capture_output=True, text=True, timeout=120
    )
    assert _cells(read_csv(io.StringIO(stdout.stdout))) == want


def test_diff_and_audit_baseline_read_parquet(tmp_path: Path) -> None:
    import datetime as dt

    from twinscan.audit.run import load_baseline
    from twinscan.compare.diff import diff_files, load_scan

    now = dt.datetime.now(dt.UTC)
    meta = ScanMeta(Engine.NATIVE, now, now, "", "twinscan", (Technique.SYN,))
    a = StreamWriters(parquet=tmp_path / "a", csv=tmp_path / "a.csv", report=False)
    a.block(_block("127.0.0.1", [1, 2, 3]))
    a.close(meta)
    b = StreamWriters(parquet=tmp_path / "b", report=False)
    b.block(_block("127.0.0.1", [1, 2]))
    b.close(meta)
    pd.testing.assert_frame_equal(load_scan(tmp_path / "a"), read_csv(tmp_path / "a.csv"))
    one_file = tmp_path / "a" / "syn" / "block-000000.parquet"
    pd.testing.assert_frame_equal(load_scan(one_file), read_csv(tmp_path / "a.csv"))
    changes = diff_files(tmp_path / "a", tmp_path / "b").rows
    assert len(changes) == 1 and int(changes["port"].iloc[0]) == 3
    assert len(load_baseline(tmp_path / "b")) == 2
    proc = subprocess.run(
        [*TWINSCAN, "diff", str(tmp_path / "a"), str(tmp_path / "a.csv")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


@st.composite
def _host_blocks(draw: st.DrawFn) -> list[ResultColumns]:
    """Blocks of whole hosts in host order, each host's ports sorted, states drawn so that
    some hosts fold a state (over 25 ports of it) and some list every port."""
    hosts = draw(st.lists(st.sampled_from(["10.0.0.1", "10.0.0.2", "10.0.0.10", "::1"]),
                          min_size=1, max_size=4, unique=True))  # fmt: skip
    hosts.sort(key=host_sort_key)
    per_host = []
    for host in hosts:
        ports = sorted(draw(st.sets(st.integers(1, 400), min_size=1, max_size=60)))
        verdicts = draw(st.lists(
            st.sampled_from([("closed", "reset"), ("open", "syn-ack"), ("filtered", "no-response"),
                             ("closed", "conn-refused"), ("open", "conn-refused")]),
            min_size=len(ports), max_size=len(ports)))  # fmt: skip
        per_host.append((host, ports, verdicts))
    cuts = draw(st.lists(st.booleans(), min_size=len(hosts), max_size=len(hosts)))
    blocks: list[list[tuple[str, list[int], list[tuple[str, str]]]]] = [[]]
    for cut, entry in zip(cuts, per_host, strict=True):
        if cut and blocks[-1]:
            blocks.append([])
        blocks[-1].append(entry)
    out = []
    for block in blocks:
        names = [h for h, ports, _ in block for _ in ports]
        verdicts = [v for _, _, vs in block for v in vs]
        out.append(ResultColumns(
            engine=Engine.NATIVE, technique=Technique.SYN, proto=Proto.TCP, host=names,
            port=[p for _, ports, _ in block for p in ports],
            state=[category_code("state", s) for s, _ in verdicts],
            reason=[category_code("reason", r) for _, r in verdicts],
            reason_ttl=[64] * len(names),
        ))  # fmt: skip
    return out


@settings(max_examples=60, deadline=None)
@given(_host_blocks(), st.booleans())
def test_streaming_report_equals_render_text(blocks: list[ResultColumns], closed: bool) -> None:
    """The report a streamed scan builds block by block is the one ``render_text`` gives for
    all its verdicts at once (it counts by codes and builds rows only for shown ports)."""
    from twinscan.formats.text_report import render_text

    meta = ScanMeta(
        Engine.NATIVE, dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        dt.datetime(2026, 1, 1, 0, 0, 3, tzinfo=dt.UTC), "twinscan scan", "twinscan test",
        (Technique.SYN,),
    )  # fmt: skip
    writers = StreamWriters(show_closed=closed)
    for block in blocks:
        writers.block(block)
    whole = ResultColumns(
        engine=Engine.NATIVE, technique=Technique.SYN, proto=Proto.TCP,
        host=[h for b in blocks for h in b.host], port=[p for b in blocks for p in b.port],
        state=[s for b in blocks for s in b.state], reason=[r for b in blocks for r in b.reason],
        reason_ttl=[t for b in blocks for t in b.reason_ttl or []],
    )  # fmt: skip
    expected = render_text(ScanResult(columns=whole, meta=meta), show_closed=closed)
    assert writers.report(meta) == expected
