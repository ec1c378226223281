"""The ``twinscan`` script ends a finished command without the interpreter's teardown
(``cli.console``, ``exit_without_teardown``) only where that teardown has nothing to do: every
byte of stdout still arrives, the exit code is the command's, and an exit handler or a live
thread makes the process exit as usual."""

from __future__ import annotations

import subprocess
import sys

import pytest

SCRIPT = """
import atexit, gc, os, sys, threading, time
collections = []
gc.callbacks.append(lambda phase, info: phase == "start" and collections.append(info))
real_exit = os._exit
def spy(code):
    sys.stderr.write(f"collections: {len(collections) - before}\\n")
    sys.stderr.write(f"exit without teardown: {code}\\n")
    sys.stderr.flush()
    real_exit(code)
os._exit = spy
if "handler" in sys.argv:
    atexit.register(lambda: print("handler ran", file=sys.stderr))
if "thread" in sys.argv:
    def late():
        time.sleep(0.3)
        print("thread finished", file=sys.stderr)
    threading.Thread(target=late).start()
if "split" in sys.argv:  # a bulk scan that sends its batches from two threads
    from twinscan.engines import raw
    raw._cpus = lambda: 2
    raw.SPLIT_MIN = 2
sys.argv = ["twinscan", *sys.argv[sys.argv.index("--") + 1:]]
from twinscan.cli import console
before = len(collections)
console()
"""


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, timeout=60
    )


def test_a_finished_scan_skips_the_teardown_and_keeps_its_output() -> None:
    proc = _run("--", "scan", "-sS", "-p", "1-3000", "127.0.0.1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("engine,") and len(lines) == 3001  # header + every port
    assert "exit without teardown: 0" in proc.stderr
    # (cli.GC_YOUNG_THRESHOLD: the collector found nothing to free in such a scan)
    assert "collections: 0" in proc.stderr


def test_a_bulk_scan_ends_its_sending_thread_and_skips_the_teardown() -> None:
    proc = _run("split", "--", "scan", "-sS", "-p", "1-5000", "127.0.0.1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.splitlines()) == 5001
    assert "exit without teardown: 0" in proc.stderr


def test_the_exit_code_is_the_commands() -> None:
    proc = _run("--", "scan", "-sS", "-p", "1-70000", "127.0.0.1")
    assert proc.returncode == 2
    assert "port out of range" in proc.stderr
    assert "exit without teardown: 2" in proc.stderr


@pytest.mark.parametrize(
    ("reason", "shows"), [("handler", "handler ran"), ("thread", "thread finished")]
)
def test_an_exit_handler_or_a_thread_gets_the_usual_exit(reason: str, shows: str) -> None:
    proc = _run(reason, "--", "scan", "-sS", "-p", "1-100", "127.0.0.1")
    assert proc.returncode == 0, proc.stderr
    assert "twinscan done" in proc.stdout
    assert shows in proc.stderr
    assert "exit without teardown" not in proc.stderr
