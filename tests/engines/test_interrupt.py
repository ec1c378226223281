"""Ctrl-C and SIGTERM: real signals on real twinscan processes (loopback only).

A terminal's Ctrl-C signals the whole foreground process group; ``kill``, ``timeout`` or a
service manager may signal the parent alone. Either way a scan exits 130 with the finished
verdicts written and marked incomplete, and leaves no worker (or nmap) behind; ``compare``
stops at once and compares only what both engines finished.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from twinscan.core.progress import Progress
from twinscan.core.schema import ResultColumns, ScanMeta, ScanResult
from twinscan.core.vocab import Engine, Technique
from twinscan.engines.forked import run_forked
from twinscan.formats.csv import read_csv, write_result_csv
from twinscan.formats.incomplete import INCOMPLETE_ATTR, IncompleteScanWarning, is_incomplete
from twinscan.formats.jsonl import read_jsonl, write_jsonl

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs POSIX signals and fork")

BIN = Path(sys.executable).parent
TWINSCAN = str(BIN / "twinscan")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")
needs_nmap = pytest.mark.skipif(shutil.which("nmap") is None, reason="needs nmap")

#: a connect scan of every loopback port that takes ~13 s unless stopped (forked workers).
BIG_CONNECT = ["-sT", "-p-", "--max-rate", "5000", "127.0.0.1"]


# --- helpers ---------------------------------------------------------------------------------


def _session_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[3]) if fields[0] != "Z" else None  # state, ppid, pgrp, session


def _left_in_session(sid: int) -> list[int]:
    """Live processes of the session ``sid`` (the twinscan process started it)."""
    pids = [int(p) for p in os.listdir("/proc") if p.isdigit()]
    return [p for p in pids if _session_of(p) == sid]


def _children_named(pid: int, name: str) -> list[int]:
    import psutil

    try:
        kids = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        return []
    out = []
    for kid in kids:
        try:
            if kid.name() == name:
                out.append(kid.pid)
        except psutil.Error:
            pass
    return out


class Run:
    """A twinscan process in its own session, stopped by a real signal."""

    def __init__(self, argv: Sequence[str], cwd: Path, *, sigint_ignored: bool = False) -> None:
        # sigint_ignored: as a script's `twinscan ... &` starts it (a background job)
        ignore = (lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if sigint_ignored else None
        self.proc = subprocess.Popen(
            [TWINSCAN, *argv],
            cwd=cwd,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
            preexec_fn=ignore,
        )
        self.stdout = self.stderr = ""
        self.nmap_seen: list[int] = []

    def wait_for(self, condition: Callable[[], bool], limit_s: float) -> None:
        deadline = time.monotonic() + limit_s
        for _ in range(int(limit_s / 0.02) + 1):
            if condition() or time.monotonic() > deadline or self.proc.poll() is not None:
                return
            time.sleep(0.02)

    def watch_nmap(self, limit_s: float) -> None:
        def seen() -> bool:
            self.nmap_seen += _children_named(self.proc.pid, "nmap")
            return bool(self.nmap_seen)

        self.wait_for(seen, limit_s)

    def stop(self, sig: int = signal.SIGINT, *, group: bool = False) -> int:
        assert self.proc.poll() is None, f"finished before the signal: {self.proc.stderr}"
        if group:
            os.killpg(self.proc.pid, sig)  # a terminal's Ctrl-C: every process of the group
        else:
            os.kill(self.proc.pid, sig)  # kill/timeout: the parent alone
        t0 = time.monotonic()
        try:
            self.stdout, self.stderr = self.proc.communicate(timeout=20)
        finally:
            if self.proc.poll() is None:  # pragma: no cover - a hang: clean up, then fail
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.communicate()
        self.stop_s = time.monotonic() - t0
        self.assert_nothing_left()
        return self.proc.returncode

    def assert_nothing_left(self) -> None:
        for pid in self.nmap_seen:  # killed and reaped before twinscan exits, not after
            assert _session_of(pid) is None, f"nmap {pid} still runs"
        left: list[int] = []
        for _ in range(100):  # up to ~2 s for the kernel to finish tearing down
            left = _left_in_session(self.proc.pid)
            if not left:
                break
            time.sleep(0.02)
        assert not left, f"processes left behind: {left}"


def _csv_rows(path: Path) -> tuple[list[str], str]:
    lines = path.read_text().splitlines()
    return lines[1:-1], lines[-1]


def _assert_partial_csv(path: Path, all_ports: int = 65535) -> int:
    rows, last = _csv_rows(path)
    assert last.startswith("# twinscan: incomplete scan (interrupted): ")
    assert f"{len(rows)} port verdicts" in last
    assert 0 < len(rows) < all_ports
    assert not any(r.startswith("#") for r in rows)
    with pytest.warns(IncompleteScanWarning, match="incomplete scan"):
        frame = read_csv(path)
    assert len(frame) == len(rows) and is_incomplete(frame)
    assert frame["port"].is_unique
    return len(rows)


# --- scan: the connect engine's forked workers ------------------------------------------------


@pytest.mark.parametrize("group", [False, True], ids=["parent-only", "process-group"])
def test_sigint_keeps_the_finished_connect_verdicts(tmp_path: Path, group: bool) -> None:
    run = Run(["scan", *BIG_CONNECT, "--csv", "out.csv", "--json", "out.jsonl"], tmp_path)
    time.sleep(1.5)
    assert run.stop(signal.SIGINT, group=group) == 130, run.stderr
    assert "KeyboardInterrupt" not in run.stderr and "failed" not in run.stderr
    assert run.stop_s < 5
    n = _assert_partial_csv(tmp_path / "out.csv")
    lines = (tmp_path / "out.jsonl").read_text().splitlines()
    assert len(lines) == n + 1
    marker = json.loads(lines[-1])
    assert marker["twinscan_incomplete"] is True and marker["reason"] == "interrupted"
    with pytest.warns(IncompleteScanWarning):
        assert len(read_jsonl(tmp_path / "out.jsonl")) == n


def test_sigterm_stops_a_scan_like_ctrl_c(tmp_path: Path) -> None:
    run = Run(["scan", *BIG_CONNECT, "--csv", "out.csv"], tmp_path)
    time.sleep(1.5)
    assert run.stop(signal.SIGTERM) == 130, run.stderr
    _assert_partial_csv(tmp_path / "out.csv")


def test_sigterm_stops_a_background_scan_and_its_workers(tmp_path: Path) -> None:
    """A scan started in the background inherits SIGINT ignored, its forked workers too: the
    parent passes the stop on as SIGTERM, so `kill` still keeps the finished verdicts (the
    workers ignored a forwarded SIGINT until their grace ran out and the scan failed)."""
    run = Run(["scan", *BIG_CONNECT, "--csv", "out.csv"], tmp_path, sigint_ignored=True)
    time.sleep(1.5)
    assert run.stop(signal.SIGTERM) == 130, run.stderr
    assert run.stop_s < 5
    _assert_partial_csv(tmp_path / "out.csv")


def test_sigint_to_a_small_in_process_scan(tmp_path: Path) -> None:
    run = Run(["scan", "-sT", "-p", "1-3000", "--max-rate", "1000", "127.0.0.1"], tmp_path)
    time.sleep(1.5)
    assert run.stop(signal.SIGINT) == 130, run.stderr
    assert "INCOMPLETE" in run.stdout


@needs_root
@pytest.mark.parametrize("group", [False, True], ids=["parent-only", "process-group"])
def test_sigint_keeps_the_finished_syn_verdicts(tmp_path: Path, group: bool) -> None:
    argv = ["scan", "-sS", "-p-", "--max-rate", "5000", "127.0.0.1", "--csv", "out.csv"]
    run = Run(argv, tmp_path)
    time.sleep(1.5)
    assert run.stop(signal.SIGINT, group=group) == 130, run.stderr
    assert run.stop_s < 5
    _assert_partial_csv(tmp_path / "out.csv")


# --- compare ----------------------------------------------------------------------------------


_DRIVER = textwrap.dedent(
    """
    import json, sys
    from twinscan.core.progress import NoProgress
    from twinscan.compare.run import run_compare
    from twinscan.request.build import build_request
    from twinscan.core.vocab import Technique

    request = build_request(
        targets=["127.0.0.1"], techniques=[Technique.CONNECT], ports=sys.argv[1],
        max_rate=float(sys.argv[2]), argv=("twinscan", "compare"),
    )
    result = run_compare(request, progress=NoProgress())
    print(json.dumps({"interrupted": result.interrupted, "rows": len(result.rows),
                      "note": result.interruption_note}))
    """
)


def _driver(ports: str, rate: int, cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", _DRIVER, ports, str(rate)],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _driven(proc: subprocess.Popen[str], sig: int, group: bool) -> dict[str, object]:
    (os.killpg if group else os.kill)(proc.pid, sig)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err
    record: dict[str, object] = json.loads(out.splitlines()[-1])
    return record


@needs_nmap
@pytest.mark.parametrize("group", [False, True], ids=["parent-only", "process-group"])
def test_run_compare_stops_in_the_native_stage_and_starts_no_nmap(
    tmp_path: Path, group: bool
) -> None:
    proc = _driver("1-65535", 5000, tmp_path)
    run = Run.__new__(Run)
    run.proc, run.nmap_seen = proc, []
    run.watch_nmap(1.5)
    assert not run.nmap_seen
    record = _driven(proc, signal.SIGINT, group)
    assert record == {
        "interrupted": True,
        "rows": 0,
        "note": "interrupted: nothing could be compared (no technique finished on both engines)",
    }
    assert not _children_named(proc.pid, "nmap")
    run.assert_nothing_left()


@needs_nmap
@pytest.mark.parametrize(
    ("sig", "group"),
    [(signal.SIGINT, False), (signal.SIGINT, True), (signal.SIGTERM, False)],
    ids=["sigint-parent-only", "sigint-process-group", "sigterm"],
)
def test_run_compare_kills_nmap_when_stopped_in_the_nmap_stage(
    tmp_path: Path, sig: int, group: bool
) -> None:
    proc = _driver("1-2000", 1000, tmp_path)  # native ~2 s, then nmap ~2 s
    run = Run.__new__(Run)
    run.proc, run.nmap_seen = proc, []
    run.watch_nmap(10)
    assert run.nmap_seen, "nmap never started"
    t0 = time.monotonic()
    record = _driven(proc, sig, group)
    assert time.monotonic() - t0 < 3
    assert record["interrupted"] is True and record["rows"] == 0
    run.assert_nothing_left()


@needs_nmap
def test_compare_cli_is_interrupted_in_the_nmap_stage(tmp_path: Path) -> None:
    run = Run(
        ["compare", "127.0.0.1", "-sT", "-p", "1-2000", "--max-rate", "1000", "--csv", "rows.csv"],
        tmp_path,
    )
    run.watch_nmap(10)
    assert run.nmap_seen, "nmap never started"
    code = run.stop(signal.SIGINT)
    assert "missing" not in run.stdout  # no native-vs-nothing disagreements
    assert code == 130
    assert "interrupted" in (run.stdout + run.stderr)


@needs_nmap
def test_compare_cli_is_interrupted_in_the_native_stage(tmp_path: Path) -> None:
    run = Run(["compare", "127.0.0.1", *BIG_CONNECT[:-1], "--csv", "rows.csv"], tmp_path)
    run.watch_nmap(1.5)
    assert not run.nmap_seen
    code = run.stop(signal.SIGINT)
    assert not run.nmap_seen
    assert "missing" not in run.stdout
    assert code == 130
    assert "interrupted" in (run.stdout + run.stderr)


# --- the forked runner, in this process ---------------------------------------------------------


class _Quiet:
    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        pass

    def finish(self) -> None:
        pass


def _until_stopped(part: int, progress: Progress) -> tuple[int, bool]:
    done = 0
    try:
        for _ in range(2000):  # ~20 s at most
            time.sleep(0.01)
            done += 1
            progress.advance()
    except KeyboardInterrupt:
        return done, True
    return done, False


def test_run_forked_passes_a_stop_to_the_workers_and_returns_what_they_have() -> None:
    from twinscan.engines import interrupt

    interrupt.clear()
    t0 = time.monotonic()
    results = run_forked(
        [1, 2],
        _until_stopped,
        progress=_Quiet(),
        meanwhile=lambda: (time.sleep(0.3), os.kill(os.getpid(), signal.SIGINT)),
    )
    assert time.monotonic() - t0 < 5
    assert all(stopped and done > 0 for done, stopped in results)
    assert interrupt.requested()
    interrupt.clear()


# --- the incomplete marks -----------------------------------------------------------------------


def _result(incomplete: bool) -> ScanResult:
    import datetime as dt

    from twinscan.core.schema import category_code
    from twinscan.core.vocab import Engine, Proto, Technique

    now = dt.datetime.now(dt.UTC)
    columns = ResultColumns(
        engine=Engine.NATIVE,
        technique=Technique.CONNECT,
        proto=Proto.TCP,
        host=["127.0.0.1", "127.0.0.1"],
        port=[22, 80],
        state=[category_code("state", "open"), category_code("state", "closed")],
        reason=[category_code("reason", "syn-ack"), category_code("reason", "conn-refused")],
    )
    meta = ScanMeta(Engine.NATIVE, now, now, "twinscan scan", "twinscan", incomplete=incomplete)
    return ScanResult(columns=columns, meta=meta)


@pytest.mark.parametrize("built", [False, True], ids=["columns", "frame"])
def test_csv_of_an_incomplete_scan_ends_with_a_comment_the_reader_skips(built: bool) -> None:
    complete, partial = _result(False), _result(True)
    if built:
        complete.frame, partial.frame = complete.frame, partial.frame
    a, b = io.StringIO(), io.StringIO()
    write_result_csv(complete, a)
    write_result_csv(partial, b)
    assert b.getvalue().startswith(a.getvalue())
    extra = b.getvalue()[len(a.getvalue()) :]
    assert extra == (
        "# twinscan: incomplete scan (interrupted): 2 port verdicts; "
        "ports without a row were not scanned\n"
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not is_incomplete(read_csv(io.StringIO(a.getvalue())))
    with pytest.warns(IncompleteScanWarning):
        frame = read_csv(io.StringIO(b.getvalue()))
    assert frame.attrs[INCOMPLETE_ATTR].startswith("incomplete scan (interrupted)")
    assert list(frame["port"]) == [22, 80]


def test_json_lines_of_an_incomplete_scan_end_with_a_marker() -> None:
    a, b = io.StringIO(), io.StringIO()
    write_jsonl(_result(False), a)
    write_jsonl(_result(True), b)
    assert b.getvalue().startswith(a.getvalue())
    marker = json.loads(b.getvalue().splitlines()[-1])
    assert marker["twinscan_incomplete"] is True and marker["rows"] == 2
    with pytest.warns(IncompleteScanWarning):
        frame = read_jsonl(io.StringIO(b.getvalue()))
    assert len(frame) == 2 and is_incomplete(frame)


def test_diff_warns_about_an_incomplete_file_in_one_line(tmp_path: Path) -> None:
    write_result_csv(_result(True), tmp_path / "a.csv")
    write_result_csv(_result(False), tmp_path / "b.csv")
    proc = subprocess.run(
        [TWINSCAN, "diff", "a.csv", "b.csv"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    warning = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(warning) == 1 and warning[0].startswith("twinscan: warning: a.csv: incomplete")


class _StopWhileWriting:
    """A block consumer that sends this process SIGINT while it writes the first block (as a
    Ctrl-C that lands during a write would) and records each block's rows."""

    def __init__(self) -> None:
        self.rows: list[int] = []

    def block(self, columns: ResultColumns) -> None:
        if not self.rows:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)  # the handler runs now: nothing may cut this write short
        self.rows.append(len(columns))


@pytest.mark.parametrize("technique", [Technique.CONNECT, Technique.SYN])
def test_a_stop_while_a_block_is_written_finishes_the_write_then_stops(
    technique: Technique, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Streamed scans run their blocks in this process: a stop signal during a write is
    deferred, the block is written whole, and the engine stops at its next turn."""
    from twinscan.engines import streamed
    from twinscan.request.build import build_request

    monkeypatch.setattr(streamed, "BLOCK_PROBES", 1000)  # one host per block
    request = build_request(targets=["127.0.0.1-6"], techniques=(technique,), ports="1-1000")
    consumer = _StopWhileWriting()
    meta = streamed.run_streamed(request, Engine.NATIVE, consumer)
    assert meta.incomplete
    assert consumer.rows[0] == 1000  # the first block, whole
    assert len(consumer.rows) < 6  # the hosts after the stop were never scanned
