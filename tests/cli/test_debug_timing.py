"""``twinscan scan --debug-timing``: where a real scan's time went, printed at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from twinscan.core import phases

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw sockets need root")

#: the marks a whole-result raw scan takes, in order
SYN_MARKS = [
    "twinscan.cli imported",
    "options parsed without typer",
    "options parsed",
    "targets, ports and plan checked",
    "syn: engine starts",
    "syn: probes planned",
    "syn: sockets open, probing starts",
    "syn: probing done",
    "syn: result built",
    "scan done",
    "files written",
    "report rendered",
    "report printed",
    "command returned",
]


def _scan(*args: str) -> tuple[subprocess.CompletedProcess[str], float, float]:
    before = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "twinscan", "scan", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, before, time.perf_counter()


@needs_root
def test_a_raw_scan_prints_its_phases_in_order_within_the_process_life() -> None:
    proc, before, after = _scan("-sS", "-p", "1-200", "127.0.0.1", "--debug-timing")
    assert proc.returncode == 0, proc.stderr
    assert "127.0.0.1" in proc.stdout  # the report, as without the option
    parsed = phases.parse(proc.stderr.splitlines())
    assert parsed is not None, proc.stderr
    origin, taken = parsed
    assert [name for name, _ in taken] == SYN_MARKS
    times = [at for _, at in taken]
    assert times == sorted(times)
    # the origin is the kernel's record of the start (to a clock tick, 10 ms at most): on the
    # same clock as this process's, after it spawned the scan and before it saw it end
    assert before - 0.011 <= origin <= times[0] <= after


def test_without_the_option_nothing_is_printed() -> None:
    proc, _, _ = _scan("-sT", "-p", "1-5", "127.0.0.1")
    assert proc.returncode == 0, proc.stderr
    assert "debug timing" not in proc.stderr
    assert phases.parse(proc.stderr.splitlines()) is None


def test_a_connect_scan_marks_its_technique() -> None:
    proc, _, _ = _scan("-sT", "-p", "1-5", "127.0.0.1", "--debug-timing")
    assert proc.returncode == 0, proc.stderr
    parsed = phases.parse(proc.stderr.splitlines())
    assert parsed is not None
    names = [name for name, _ in parsed[1]]
    assert names.index("connect: engine starts") < names.index("connect: result built")
    assert "command module imported" not in names  # (parsed without typer)


def test_a_command_line_typer_parses_is_timed_too() -> None:
    proc, _, _ = _scan("-sT", "-p", "1-5", "--debug-timing", "--", "127.0.0.1")
    assert proc.returncode == 0, proc.stderr
    parsed = phases.parse(proc.stderr.splitlines())
    assert parsed is not None
    names = [name for name, _ in parsed[1]]
    assert names[:3] == ["twinscan.cli imported", "command module imported", "options parsed"]
    assert names[-1] == "command returned"
