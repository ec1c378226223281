"""The connect engine against real loopback listeners (no privileges needed)."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from twinscan.cli import app
from twinscan.core.progress import NoProgress
from twinscan.core.schema import COLUMNS
from twinscan.core.vocab import Engine, IanaRange, Technique
from twinscan.engines import connect
from twinscan.formats.csv import read_csv
from twinscan.formats.nmap_xml_read import parse_nmap_xml
from twinscan.request.build import build_request
from twinscan.request.model import ScanRequest


@contextlib.contextmanager
def listener(host: str = "127.0.0.1", backlog: int = 16) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    srv = socket.socket(family, socket.SOCK_STREAM)
    try:
        srv.bind((host, 0))
        srv.listen(backlog)
        yield srv
    finally:
        srv.close()


def free_port(host: str = "127.0.0.1") -> int:
    """A port nothing listens on (bound then released, so no listener can appear by accident)."""
    with listener(host) as srv:
        port: int = srv.getsockname()[1]
    return port


def request_for(target: str, ports: str, **timing: object) -> ScanRequest:
    req = build_request(
        targets=[target], techniques=[Technique.CONNECT], ports=ports, timing_level=4
    )
    if timing:
        req = dataclasses.replace(req, timing=dataclasses.replace(req.timing, **timing))
    return req


def verdicts(frame: pd.DataFrame) -> dict[int, tuple[str, str]]:
    return {
        int(r.port): (str(r.state), str(r.reason))
        for r in frame[["port", "state", "reason"]].itertuples()
    }


def test_open_and_closed_on_ipv4_loopback() -> None:
    with listener() as srv:
        open_port = srv.getsockname()[1]
        closed_port = free_port()
        req = request_for("127.0.0.1", f"{open_port},{closed_port}")
        result = connect.scan(req, Technique.CONNECT, progress=NoProgress())
    frame = result.frame
    assert list(frame.columns) == list(COLUMNS)
    assert verdicts(frame) == {
        open_port: ("open", "syn-ack"),
        closed_port: ("closed", "conn-refused"),
    }
    assert set(frame["engine"].astype(str)) == {Engine.NATIVE.value}
    assert set(frame["technique"].astype(str)) == {"connect"}
    assert frame["rtt_ms"].notna().all()
    assert result.meta.techniques == (Technique.CONNECT,)
    assert not result.meta.incomplete


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 support in this kernel")
    try:
        ctx = listener("::1")
        srv = ctx.__enter__()
    except OSError as exc:
        pytest.skip(f"::1 unusable here: {exc}")
    try:
        open_port = srv.getsockname()[1]
        closed_port = free_port("::1")
        req = request_for("::1", f"{open_port},{closed_port}")
        frame = connect.scan(req, Technique.CONNECT, progress=NoProgress()).frame
    finally:
        ctx.__exit__(None, None, None)
    assert verdicts(frame) == {
        open_port: ("open", "syn-ack"),
        closed_port: ("closed", "conn-refused"),
    }
    assert set(frame["host"].astype(str)) == {"::1"}


def test_dropped_syn_is_filtered_after_the_retries() -> None:
    # A listener whose accept queue is full drops further SYNs (tcp_conn_request): the probe's
    # connect() never completes, exactly what a DROP firewall rule does.
    with listener(backlog=0) as srv:
        port = srv.getsockname()[1]
        fillers = []
        try:
            for _ in range(3):
                c = socket.socket()
                c.setblocking(False)
                c.connect_ex(("127.0.0.1", port))
                fillers.append(c)
            req = request_for(
                "127.0.0.1",
                str(port),
                max_retries=1,
                initial_rtt_timeout_ms=150,
                max_rtt_timeout_ms=150,
            )
            frame = connect.scan(req, Technique.CONNECT, progress=NoProgress()).frame
        finally:
            for c in fillers:
                c.close()
    assert verdicts(frame) == {port: ("filtered", "no-response")}
    assert frame["rtt_ms"].isna().all()


def test_forked_workers_agree_with_one_process() -> None:
    with listener() as a, listener() as b:
        opened = {a.getsockname()[1], b.getsockname()[1]}
        lo = min(opened) - 3000 if min(opened) > 4000 else 1
        spec = f"{lo}-{lo + 5999},{','.join(map(str, sorted(opened)))}"
        req = request_for("127.0.0.1", spec)
        one = connect.scan(req, Technique.CONNECT, progress=NoProgress(), workers=1).frame
        two = connect.scan(req, Technique.CONNECT, progress=NoProgress(), workers=2).frame
    assert len(one) == len(set(req.ports.tcp))
    cols = ["host", "port", "state", "reason"]
    pd.testing.assert_frame_equal(one[cols], two[cols])
    got_open = set(one.loc[one["state"] == "open", "port"].astype(int))
    assert opened <= got_open


class _Counting:
    def __init__(self) -> None:
        self.total = 0
        self.done = 0

    def start(self, description: str, total: int) -> None:
        self.total = total

    def advance(self, n: int = 1) -> None:
        self.done += n

    def finish(self) -> None:
        pass


@pytest.mark.parametrize("workers", [1, 2])
def test_progress_counts_every_port(workers: int) -> None:
    req = request_for("127.0.0.1", "20000-25000")
    prog = _Counting()
    connect.scan(req, Technique.CONNECT, progress=prog, workers=workers)
    assert prog.total == prog.done == 5001


def test_shard_count_policy() -> None:
    t4 = request_for("127.0.0.1", "1").timing
    assert connect.shard_count(t4, 100) == 1
    assert connect.shard_count(dataclasses.replace(t4, scan_delay_ms=10), 65535) == 1
    assert connect.shard_count(dataclasses.replace(t4, max_parallelism=1), 65535) == 1
    assert 1 <= connect.shard_count(t4, 65535) <= 4
    shared = connect.shard_timing(dataclasses.replace(t4, max_rate=1000, min_rate=10), 2)
    assert shared.max_rate == 500 and shared.min_rate == 5


def test_iana_range_shortcut_and_column() -> None:
    req = request_for("127.0.0.1", "well-known")
    frame = connect.scan(req, Technique.CONNECT, progress=NoProgress()).frame
    lo, hi = IanaRange.WELL_KNOWN.bounds
    assert set(frame["port"].astype(int)) == set(range(lo, hi + 1))  # port 0 too: named explicitly
    assert set(frame["iana_range"].astype(str)) == {IanaRange.WELL_KNOWN.value}


def test_cli_connect_scan_writes_schema_csv() -> None:
    with listener() as srv:
        port = srv.getsockname()[1]
        closed = free_port()
        res = CliRunner().invoke(
            app, ["scan", "-sT", "-p", f"{port},{closed}", "127.0.0.1", "--csv", "-"]
        )
    assert res.exit_code == 0, res.output
    frame = read_csv(io.StringIO(res.stdout))
    assert verdicts(frame) == {port: ("open", "syn-ack"), closed: ("closed", "conn-refused")}
    assert set(frame["iana_range"].astype(str)) == {IanaRange.of(port).value} | {
        IanaRange.of(closed).value
    }


@pytest.mark.nmap
def test_same_verdicts_as_nmap_on_loopback() -> None:
    if shutil.which("nmap") is None:
        pytest.skip("nmap is not installed")
    with listener() as a, listener() as b:
        ports = sorted({a.getsockname()[1], b.getsockname()[1], free_port(), free_port()})
        spec = ",".join(map(str, ports))
        xml = subprocess.run(
            ["nmap", "-sT", "-Pn", "-n", "-T4", "-p", spec, "-oX", "-", "127.0.0.1"],
            capture_output=True,
            check=True,
            timeout=60,
        ).stdout
        ours = connect.scan(
            request_for("127.0.0.1", spec), Technique.CONNECT, progress=NoProgress()
        )
    theirs = parse_nmap_xml(xml).frame
    assert verdicts(ours.frame) == verdicts(theirs)
    assert {s for s, _ in verdicts(theirs).values()} == {"open", "closed"}


@pytest.mark.parametrize("ports", ["1-3000", "1-6000"], ids=["one-process", "forked"])
def test_ctrl_c_keeps_what_finished_and_exits_130(tmp_path: Path, ports: str) -> None:
    out = tmp_path / "partial.csv"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinscan", "scan", "-sT", "--max-rate", "400", "-p", ports,
         "127.0.0.1", "--csv", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        time.sleep(2.0)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 130, err.decode()
    assert b"Traceback" not in err
    frame = read_csv(out)
    assert 50 < len(frame) < int(ports.split("-")[1])  # some, not all, at 400 probes/s
    assert set(frame["state"].astype(str)) <= {"open", "closed"}


def test_a_streaming_worker_hands_over_verdicts_by_count_as_well_as_by_time() -> None:
    """A batch leaves every ``EMIT_MAX_ROWS`` verdicts even when the clock stands still (at
    loopback speed a quarter second is ~16,000 verdicts, built and pickled at once), and the
    rest on the interval; nothing is emitted twice."""
    from twinscan.core.rules import Verdict
    from twinscan.core.vocab import PortState, Reason
    from twinscan.engines import stream
    from twinscan.protocol.connect_plan import Outcome

    closed = Outcome(Verdict(PortState.CLOSED, Reason.CONN_REFUSED), 0.1, 1)
    plan = type("Plan", (), {"outcomes": {}})()
    now = [0.0]
    batches: list[int] = []
    with stream.streaming(lambda cols: batches.append(len(cols))):
        emitter = connect._OutcomeStream(plan, lambda: now[0])
        for port in range(1, stream.EMIT_MAX_ROWS + 11):
            plan.outcomes[("127.0.0.1", port)] = closed
            emitter.poll()
        assert batches == [stream.EMIT_MAX_ROWS]  # by count, at the clock's first reading
        emitter.poll()
        assert batches == [stream.EMIT_MAX_ROWS]  # 10 waiting, no time passed
        now[0] += stream.EMIT_INTERVAL_S
        emitter.poll()
        assert batches == [stream.EMIT_MAX_ROWS, 10]
