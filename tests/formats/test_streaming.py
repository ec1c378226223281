"""Streaming writers and Parquet: what a streamed scan writes equals the whole-result writers'.

Loopback connect scans (no privileges): a scan large enough to stream (two host blocks) is
written block by block to CSV, JSON lines, Parquet and the text report, and read back equal
to the in-memory scan's verdicts; the Parquet directory is read by pandas, dask.dataframe
and twinscan's readers with the schema's dtypes.
"""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from twinscan.core.schema import COLUMNS, ResultColumns, ScanMeta, category_code, dtypes
from twinscan.core.vocab import Engine, Technique
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
