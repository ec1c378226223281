"""nmap's formats (``-oX``, ``-oN``, ``-oG``) written host by host as a scan streams.

A loopback connect scan with a few listening ports runs twice through ``run_job``: once on
the whole-result path, once streamed (the streaming threshold and block size forced small,
one host per block). The streamed files equal the whole-result files except for times; the
XML reads back (``nmap_xml_read``) to the same verdicts. A unit test feeds ``StreamWriters``
many blocks with every output open and checks that its memory does not grow with them.
"""

from __future__ import annotations

import datetime as dt
import gc
import re
import socket
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinscan.core.errors import UsageError
from twinscan.core.schema import ResultColumns, ScanMeta, category_code
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import streamed
from twinscan.engines.job import Job, Outputs, plan_job, run_job
from twinscan.formats.nmap_xml_read import read_nmap_xml_file
from twinscan.formats.streaming import StreamWriters
from twinscan.request.build import build_request

SCAN = ["twinscan", "scan", "-sT", "-p", "1-3000", "127.0.0.1-3"]
#: (host, port) listening during the scan (below the ephemeral range, above the usual services)
LISTENING = [("127.0.0.1", 2001), ("127.0.0.1", 2002), ("127.0.0.2", 2500), ("127.0.0.3", 2999)]


@pytest.fixture
def listeners() -> Iterator[None]:
    socks = []
    try:
        for host, port in LISTENING:
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
            s.listen(64)
            socks.append(s)
        yield
    finally:
        for s in socks:
            s.close()


def _outputs(d: Path) -> Outputs:
    d.mkdir()
    return Outputs(xml=d / "scan.xml", normal=d / "scan.nmap", grepable=d / "scan.gnmap")


def _request():  # type: ignore[no-untyped-def]
    return build_request(
        targets=["127.0.0.1-3"], techniques=(Technique.CONNECT,), ports="1-3000", argv=SCAN
    )


#: what differs between two runs of the same scan: times and durations.
_TIMES = [
    (re.compile(r'(start|starttime|endtime|time|elapsed)="[^"]*"'), r'\1="T"'),
    (re.compile(r'(startstr|timestr)="[^"]*"'), r'\1="T"'),
    (re.compile(r"scanned in [0-9.]+ seconds"), "scanned in S seconds"),
    (re.compile(r"(initiated|done at) \w{3} \w{3} [ 0-9]\d \d\d:\d\d:\d\d \d{4}"), r"\1 T"),
]


def _untimed(text: str) -> str:
    for pattern, repl in _TIMES:
        text = pattern.sub(repl, text)
    return text


def test_streamed_nmap_formats_equal_the_whole_result(
    tmp_path: Path, listeners: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    whole = _outputs(tmp_path / "whole")
    request = _request()
    assert not streamed.streams(request)
    run_job(Job(request, Engine.NATIVE, whole))

    monkeypatch.setattr(streamed, "STREAM_MIN_PROBES", 100)
    monkeypatch.setattr(streamed, "BLOCK_PROBES", 3000)  # one host per block
    assert streamed.streams(request) and len(streamed.host_blocks(request, Technique.CONNECT)) == 3
    streamed_out = _outputs(tmp_path / "streamed")
    outcome = run_job(Job(request, Engine.NATIVE, streamed_out))
    assert not outcome.meta.incomplete

    for name in ("scan.xml", "scan.nmap", "scan.gnmap"):
        want = (tmp_path / "whole" / name).read_text()
        got = (tmp_path / "streamed" / name).read_text()
        # every file carries times (the runs may share them: both can end within a second,
        # now that the writers are fast), and only times may differ
        assert _untimed(want) != want and _untimed(got) != got, name
        assert _untimed(got) == _untimed(want), name
    xml = (tmp_path / "streamed" / "scan.xml").read_text()
    assert xml.count("<host ") == 3 and xml.count('<state state="open"') >= len(LISTENING)
    assert 'exit="success"' in xml and "twinscan done; 3 IP addresses" in xml

    got_frame = read_nmap_xml_file(streamed_out.xml).frame  # type: ignore[arg-type]
    want_frame = read_nmap_xml_file(whole.xml).frame  # type: ignore[arg-type]
    cols = ["host", "proto", "port", "state", "reason"]
    assert len(got_frame) == 9000
    assert (
        got_frame[cols].astype(str).values.tolist() == want_frame[cols].astype(str).values.tolist()
    )
    opened = got_frame[got_frame["state"].astype(str) == "open"]
    # others' listeners on the shared machine may be open too
    found = set(zip(opened["host"].astype(str), opened["port"].astype(int), strict=True))
    assert found >= set(LISTENING)


def test_dask_takes_nmap_formats_for_one_technique(tmp_path: Path) -> None:
    one = Job(_request(), Engine.NATIVE, Outputs(xml=tmp_path / "a.xml"), dask="local:1")
    plan_job(one)  # accepted
    two = build_request(
        targets=["127.0.0.1"], techniques=(Technique.CONNECT, Technique.UDP), ports="T:1,U:1"
    )
    with pytest.raises(UsageError, match="one technique"):
        plan_job(Job(two, Engine.NATIVE, Outputs(normal=tmp_path / "a.nmap"), dask="local:1"))
    with pytest.raises(UsageError, match="--owners"):
        plan_job(Job(_request(), Engine.NATIVE, Outputs(xml=tmp_path / "a.xml"), owners=True, dask="local:1"))  # fmt: skip


def _block(first: int, hosts: int, ports: int) -> ResultColumns:
    closed = category_code("state", "closed")
    refused = category_code("reason", "conn-refused")
    n = hosts * ports
    return ResultColumns(
        Engine.NATIVE,
        Technique.CONNECT,
        Technique.CONNECT.proto,
        host=[f"127.0.{(first + h) // 256}.{(first + h) % 256}" for h in range(hosts) for _ in range(ports)],
        port=[p for _ in range(hosts) for p in range(1, ports + 1)],
        state=[closed] * n,
        reason=[refused] * n,
        reason_ttl=[0] * n,
        reason_ip=[None] * n,
        rtt_ms=[0.1] * n,
    )  # fmt: skip


def test_stream_writers_keep_no_block(tmp_path: Path) -> None:
    """Every output open (nmap's three too): after the first blocks, twelve more blocks of
    2000 verdicts leave the writers' memory where it was (a held block would be ~0.5 MB)."""
    now = dt.datetime.now(dt.UTC)
    meta = ScanMeta(Engine.NATIVE, now, now, "twinscan scan", "twinscan 0", (Technique.CONNECT,))
    writers = StreamWriters(
        csv=tmp_path / "s.csv",
        json_path=tmp_path / "s.jsonl",
        parquet=tmp_path / "pq",
        xml=tmp_path / "s.xml",
        normal=tmp_path / "s.nmap",
        grepable=tmp_path / "s.gnmap",
        head=meta,
        ports={Technique.CONNECT: list(range(1, 1001))},
    )
    for i in range(3):  # imports, caches and the first pandas/arrow buffers
        writers.block(_block(1 + 2 * i, 2, 1000))
    gc.collect()
    tracemalloc.start()
    try:
        probe = _block(200, 2, 1000)
        one_block, _ = tracemalloc.get_traced_memory()
        del probe
        gc.collect()
        before, _ = tracemalloc.get_traced_memory()
        for i in range(12):
            writers.block(_block(10 + 2 * i, 2, 1000))
        gc.collect()
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert one_block > 100_000
    # the report keeps per host a counter (its ports are folded): well under a block
    assert after - before < one_block / 2, (after - before, one_block)
    writers.close(meta)
    xml = (tmp_path / "s.xml").read_text()
    assert xml.count("<host ") == 30 and xml.endswith("</runstats>\n</nmaprun>\n")
    assert (tmp_path / "s.nmap").read_text().count("Nmap scan report for") == 30


def test_interrupted_streamed_nmap_formats_are_marked(tmp_path: Path) -> None:
    now = dt.datetime.now(dt.UTC)
    head = ScanMeta(Engine.NATIVE, now, now, "twinscan scan", "twinscan 0", (Technique.CONNECT,))
    writers = StreamWriters(
        xml=tmp_path / "s.xml",
        normal=tmp_path / "s.nmap",
        grepable=tmp_path / "s.gnmap",
        head=head,
        ports={Technique.CONNECT: [1, 2, 3]},
        report=False,
    )
    writers.block(_block(1, 1, 3))
    writers.close(ScanMeta(Engine.NATIVE, now, now, "twinscan scan", "twinscan 0", (), True))
    assert 'exit="error"' in (tmp_path / "s.xml").read_text()
    for name in ("s.nmap", "s.gnmap"):
        last = (tmp_path / name).read_text().splitlines()[-1]
        assert last.endswith("(INCOMPLETE: interrupted)") and "1 IP address (1 host up)" in last
    with pytest.raises(ValueError, match="one technique"):
        StreamWriters(
            xml=tmp_path / "t.xml",
            head=head,
            ports={Technique.CONNECT: [1], Technique.UDP: [1]},
        )
