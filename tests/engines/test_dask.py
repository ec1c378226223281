"""Distributed scans on Dask (``--dask``): shards, a LocalCluster on loopback, real processes.

The lab test starts ``dask scheduler`` and two ``dask worker`` processes inside the lab's
scanner namespace (listening on that namespace's 127.0.0.1 only), scans lab hosts through
them, SIGKILLs one worker mid-scan and checks the result against the single-process scan and
the lab's truth, cell by cell (state and reason). Every Dask process is stopped by its PID at
the end, also on failure.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinscan.core.errors import UsageError
from twinscan.core.vocab import Technique
from twinscan.engines import dask_runner, streamed
from twinscan.formats.csv import read_csv
from twinscan.request.build import build_request

TWINSCAN = [sys.executable, "-m", "twinscan"]
DASK = str(Path(sys.executable).with_name("dask"))


def _cells(frame) -> list[tuple[str, str, int, str, str]]:  # type: ignore[no-untyped-def]
    cols = [frame[c].astype(str).tolist() for c in ("technique", "host", "state", "reason")]
    return sorted(
        (t, h, int(p), s, r)
        for t, h, p, s, r in zip(cols[0], cols[1], frame["port"].tolist(), cols[2], cols[3], strict=True)
    )  # fmt: skip


def test_parse_address() -> None:
    assert dask_runner.parse_address("local") == ("local", None)
    assert dask_runner.parse_address("local:3") == ("local", 3)
    assert dask_runner.parse_address("tcp://127.0.0.1:8786") == ("tcp://127.0.0.1:8786", None)
    with pytest.raises(UsageError):
        dask_runner.parse_address("local:0")


def test_shards_cover_the_plan_once_and_keep_udp_hosts_whole() -> None:
    request = build_request(
        targets=["127.0.0.1-3"],
        techniques=(Technique.SYN, Technique.UDP),
        ports="T:1-10000,U:1-3000",
        max_rate=1000,
    )
    blocks, shards = dask_runner.plan_shards(request, workers=2)
    assert [t for t, _ in blocks] == [Technique.SYN, Technique.UDP]
    cells = [
        (s.technique, h, p)
        for s in shards
        for h in s.request.targets
        for p in s.request.ports_for(s.technique)
    ]
    assert len(cells) == len(set(cells)) == 3 * 10000 + 3 * 3000
    assert all(s.request.timing.max_rate == 500 for s in shards)  # shared out over 2 workers
    syn = [s for s in shards if s.technique is Technique.SYN]
    assert len(syn) > 1 and all(s.probes < 4096 for s in syn)  # no forking inside Dask
    udp = [s for s in shards if s.technique is Technique.UDP]
    assert all(s.request.ports.udp == tuple(range(1, 3001)) for s in udp)  # whole hosts


def test_local_cluster_scan_equals_single_process(tmp_path: Path) -> None:
    # below the ephemeral ports the local cluster's own processes listen on
    scan = ["scan", "-sT", "-p", "1-8000", "127.0.0.1-3"]
    dask = subprocess.run(
        [*TWINSCAN, *scan, "--dask", "local:2", "--csv", "-", "-oX", str(tmp_path / "d.xml")],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert dask.returncode == 0, dask.stderr
    single = subprocess.run(
        [*TWINSCAN, *scan, "--csv", "-", "-oX", str(tmp_path / "s.xml")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    got = _cells(read_csv(io.StringIO(dask.stdout)))
    assert len(got) == 24000
    assert got == _cells(read_csv(io.StringIO(single.stdout)))
    # -oX streams host by host with --dask too
    from twinscan.formats.nmap_xml_read import read_nmap_xml_file

    assert _cells(read_nmap_xml_file(tmp_path / "d.xml").frame) == got
    assert (tmp_path / "d.xml").read_text().count("<host ") == 3


def test_dask_workers_write_parquet_equal_to_single_process(tmp_path: Path) -> None:
    """--parquet alone: each worker writes its shards' files and sends back only the report's
    summary; with --csv too, the workers still write the Parquet files. Either directory
    reads back (twinscan's reader and dask.dataframe) to the single-process scan's verdicts,
    and the report is the single-process report."""
    scan = ["scan", "-sT", "-p", "1-8000", "127.0.0.1-3"]
    listening = []
    for host, port in (("127.0.0.1", 7001), ("127.0.0.3", 7002)):
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(64)
        listening.append(sock)
    try:
        _parquet_scans(tmp_path, scan)
    finally:
        for sock in listening:
            sock.close()


def _parquet_scans(tmp_path: Path, scan: list[str]) -> None:
    import dask.dataframe as dd

    from twinscan.formats.parquet import read_parquet

    single = subprocess.run(
        [*TWINSCAN, *scan, "--parquet", str(tmp_path / "single")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert single.returncode == 0, single.stderr
    want = _cells(read_parquet(tmp_path / "single"))
    assert len(want) == 24000
    for name, more in (("alone", []), ("with-csv", ["--csv", str(tmp_path / "d.csv")])):
        dask = subprocess.run(
            [*TWINSCAN, *scan, "--dask", "local:2", "--parquet", str(tmp_path / name), *more],
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert dask.returncode == 0, dask.stderr
        files = sorted(p.name for p in (tmp_path / name / "connect").iterdir())
        assert len(files) >= 3 and all(f.startswith("block-000000-") for f in files)
        assert any("-part-" in f for f in files)  # the shards' files, not one per block
        frame = read_parquet(tmp_path / name)
        assert _cells(frame) == want
        hosts = frame["host"].astype(str).tolist()
        assert hosts == sorted(hosts) and frame["port"].tolist()[:3] == [1, 2, 3]  # scan order
        lazy = dd.read_parquet(tmp_path / name).compute()
        assert _cells(lazy) == want and str(lazy["port"].dtype) == "uint16"
        report = dask.stderr.splitlines()
        assert report[:-1] == single.stderr.splitlines()[:-1]  # the report
        assert any(line.startswith("7002/tcp") and "open" in line for line in report)
    assert _cells(read_csv(tmp_path / "d.csv")) == want


def test_block_summaries_give_the_blocks_report() -> None:
    """A block cut into interleaved shards, each summarised (closed ports as counts) and
    merged: the report equals the report of the block's verdicts, the top non-closed state
    folded or not as the whole host's counts decide."""
    import datetime as dt

    from twinscan.core.schema import ResultColumns, ScanMeta, category_code
    from twinscan.core.vocab import Engine
    from twinscan.formats.streaming import StreamWriters, summarise

    states = ["closed"] * 30 + ["filtered"] * 45 + ["open"] * 3 + ["closed"] * 2
    hosts = ["127.0.0.1"] * 80 + ["127.0.0.2"] * 80
    ports = list(range(1, 81)) * 2
    # host 1: filtered is the top state (folded), host 2: closed (its 20 filtered are listed)
    all_states = states + ["filtered"] * 20 + ["closed"] * 60
    block = ResultColumns(
        Engine.NATIVE,
        Technique.CONNECT,
        Technique.CONNECT.proto,
        host=hosts,
        port=ports,
        state=[category_code("state", s) for s in all_states],
        reason=[category_code("reason", "no-response" if s == "filtered" else "syn-ack" if s == "open" else "conn-refused") for s in all_states],
        reason_ttl=[0] * 160,
        reason_ip=[None] * 160,
        rtt_ms=[0.1] * 160,
    )  # fmt: skip

    now = dt.datetime.now(dt.UTC)
    meta = ScanMeta(Engine.NATIVE, now, now, "", "twinscan", (Technique.CONNECT,))
    whole = StreamWriters()
    whole.block(block)
    by_summary = StreamWriters()
    shards = []
    for i in range(3):  # interleaved rows, as the port slices are
        keep = [j for j in range(160) if j % 3 == i]
        shards.append(summarise(_rows_of(block, keep)))
    by_summary.summary(dask_runner.merge_summaries(shards))
    assert by_summary.rows == 160
    report = whole.report(meta)
    assert "45 filtered tcp ports" in report and "32 closed tcp ports" in report
    listed = [ln for ln in report.splitlines() if "/tcp" in ln and " filtered " in ln]
    assert "60 closed tcp ports" in report and len(listed) == 20
    assert by_summary.report(meta) == report


def _rows_of(cols, keep):  # type: ignore[no-untyped-def]
    import dataclasses

    from twinscan.core.schema import ResultColumns

    values = {
        f.name: None if getattr(cols, f.name) is None else [getattr(cols, f.name)[i] for i in keep]
        for f in dataclasses.fields(ResultColumns)[3:]
    }
    return ResultColumns(cols.engine, cols.technique, cols.proto, **values)


def test_a_shard_written_twice_leaves_one_copy(tmp_path: Path) -> None:
    """A rescheduled shard runs again with the same file name: its file is replaced."""
    import pickle

    from twinscan.formats.parquet import ParquetWriter, part_path, read_parquet

    request = build_request(targets=["127.0.0.1"], techniques=(Technique.CONNECT,), ports="1-50")
    writer = ParquetWriter(tmp_path / "pq")
    path = part_path(writer.root, "connect", 0, 0)
    payload = pickle.dumps(request)
    for _ in range(2):
        answer = pickle.loads(dask_runner.scan_shard(payload, "connect", str(path), False))
        assert answer.columns is None and answer.summary.rows == 50 and answer.parquet
        writer.adopt(Path(answer.parquet), path, answer.rows)
    stale = path.parent / f".{path.name}.dead.tmp"  # a killed worker's half-written file
    stale.write_bytes(b"PAR1")
    assert len(read_parquet(tmp_path / "pq")) == 50
    import datetime as dt

    from twinscan.core.schema import ScanMeta
    from twinscan.core.vocab import Engine

    now = dt.datetime.now(dt.UTC)
    writer.close(ScanMeta(Engine.NATIVE, now, now, "", "twinscan", (Technique.CONNECT,)))
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
    assert len(read_parquet(tmp_path / "pq")) == 50


class _StopOnFirstBlock:
    """A consumer that sends this process SIGINT while the client saves the first block --
    inside the section where stop signals are deferred, so only the flag records it."""

    def __init__(self) -> None:
        self.blocks = 0

    def block(self, columns: object) -> None:
        self.blocks += 1
        if self.blocks == 1:
            os.kill(os.getpid(), signal.SIGINT)


def test_a_stop_while_a_block_is_saved_stops_the_dask_scan(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # one host per block, more hosts than shards in flight
    monkeypatch.setattr(streamed, "BLOCK_PROBES", 1000)
    request = build_request(
        targets=["127.0.0.1-8"], techniques=(Technique.CONNECT,), ports="1-1000"
    )
    consumer = _StopOnFirstBlock()
    meta = dask_runner.run_dask(request, "local:1", consumer)
    assert meta.incomplete
    assert consumer.blocks < 8  # the hosts still queued were never scanned


def test_dask_refuses_what_it_cannot_write() -> None:
    """nmap's formats stream one technique (a <host> holds every protocol's ports)."""
    proc = subprocess.run(
        [*TWINSCAN, "scan", "-sT", "-sU", "-p", "T:1,U:1", "127.0.0.1"]
        + ["--dask", "local:1", "-oX", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "host by host for a scan of one technique" in proc.stderr
    proc = subprocess.run(
        [*TWINSCAN, "scan", "-sT", "-p", "1-10", "127.0.0.1", "--dask", "local:1", "--open"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "--owners or --open" in proc.stderr


# --- real processes in the lab --------------------------------------------------------------


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # pragma: no cover - a hang: kill it
            proc.kill()
            proc.wait(timeout=10)


@contextlib.contextmanager
def _cluster(ns: str, tmp: Path) -> Iterator[tuple[str, list[subprocess.Popen[bytes]]]]:
    """``dask scheduler`` and two ``dask worker`` processes in namespace ``ns`` (127.0.0.1)."""
    netns = ["ip", "netns", "exec", ns]
    sched_file = tmp / "scheduler.json"
    port = 18786
    address = f"tcp://127.0.0.1:{port}"
    log = (tmp / "dask.log").open("wb")
    procs: list[subprocess.Popen[bytes]] = []
    try:
        procs.append(
            subprocess.Popen(
                [*netns, DASK, "scheduler", "--host", "127.0.0.1", "--port", str(port)]
                + ["--no-dashboard", "--scheduler-file", str(sched_file)],
                stdout=log,
                stderr=log,
            )
        )
        for _ in range(2):
            procs.append(
                subprocess.Popen(
                    [*netns, DASK, "worker", address, "--no-nanny", "--nthreads", "1"]
                    + ["--host", "127.0.0.1", "--no-dashboard", "--death-timeout", "30"],
                    stdout=log,
                    stderr=log,
                )
            )
        ready = subprocess.run(
            [*netns, sys.executable, "-c"]
            + [
                f"from distributed import Client; Client({address!r}, timeout=30).wait_for_workers(2, timeout=30)"
            ],
            capture_output=True,
            text=True,
            timeout=90,
        )
        assert ready.returncode == 0, ready.stderr
        yield address, procs
    finally:
        _stop(procs)
        log.close()


@pytest.mark.lab
@pytest.mark.slow
def test_dask_processes_in_the_lab_survive_a_dead_worker(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from twinscan.lab.verify import compare
    from twinscan.request.ports import format_port_list

    targets = [h.address for h in lab.spec.hosts if h.name != "dark"]  # silent: slow, no news
    universe = format_port_list(lab.spec.tcp_universe())
    argv = ["scan", "-sS", "-T4", "-p", f"1-2500,{universe}", *targets, "--max-rate", "2500"]
    with _cluster(lab.scanner_ns, tmp_path) as (address, procs):
        scan = subprocess.Popen(
            ["ip", "netns", "exec", lab.scanner_ns, *TWINSCAN, *argv]
            + ["--dask", address, "--csv", str(tmp_path / "dask.csv")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(2.5)
            assert scan.poll() is None, "the scan ended before a worker could be killed"
            procs[1].send_signal(signal.SIGKILL)  # one worker dies mid-scan
            _out, err = scan.communicate(timeout=240)
        finally:
            if scan.poll() is None:  # pragma: no cover - a hang
                scan.kill()
                scan.communicate()
        assert scan.returncode == 0, err.decode()
        assert procs[1].wait(timeout=10) == -signal.SIGKILL
    single = lab.run([*TWINSCAN, *argv, "--csv", "-"], timeout=180)
    assert single.returncode == 0, single.stderr
    dask_frame = read_csv(tmp_path / "dask.csv")
    n_ports = len(set(range(1, 2501)) | set(lab.spec.tcp_universe()))
    assert len(dask_frame) == n_ports * len(targets)
    assert _cells(dask_frame) == _cells(read_csv(io.StringIO(single.stdout)))
    truth = lab.truth[
        (lab.truth["technique"].astype(str) == "syn") & lab.truth["host"].isin(targets)
    ]
    mismatches = compare(lab.spec, truth, dask_frame)
    assert not mismatches, "\n".join(map(str, mismatches))


def test_dask_scan_stopped_then_resumed_equals_whole(tmp_path: Path) -> None:
    """SIGINT on a --dask scan with --checkpoint: exit 130, the finished shards saved; the
    resume (without Dask) scans the rest and the union equals an uninterrupted scan."""
    ckpt = tmp_path / "scan.ckpt"
    scan = ["scan", "-sT", "-p", "1-8000", "127.0.0.1-4"]
    proc = subprocess.Popen(
        [*TWINSCAN, *scan, "--max-rate", "4000", "--dask", "local:2", "--checkpoint", str(ckpt)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        # signal once the first shard is in the checkpoint (its header is one line): the
        # stop then lands while the client saves that shard or waits for the next ones
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            if ckpt.exists() and ckpt.read_bytes().count(b"\n") >= 2:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "finished before the signal"
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # pragma: no cover - a hang
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err.decode()
    resumed = subprocess.run(
        [*TWINSCAN, "scan", "--resume", str(ckpt), "--csv", "-"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert resumed.returncode == 0, resumed.stderr
    whole = subprocess.run(
        [*TWINSCAN, *scan, "--csv", "-"], capture_output=True, text=True, timeout=120
    )
    got = _cells(read_csv(io.StringIO(resumed.stdout)))
    assert len(got) == 32000
    assert got == _cells(read_csv(io.StringIO(whole.stdout)))
