"""The forked-worker runner the connect engine shards large scans with."""

from __future__ import annotations

import os
import time

import pytest

from twinscan.core.errors import ScanFailed, TargetError
from twinscan.core.progress import Progress
from twinscan.engines.forked import run_forked

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork()")


class Count:
    def __init__(self) -> None:
        self.n = 0

    def start(self, description: str, total: int) -> None:
        pass

    def advance(self, n: int = 1) -> None:
        self.n += n

    def finish(self) -> None:
        pass


def square_all(part: list[int], progress: Progress) -> tuple[int, list[int]]:
    out = []
    for x in part:
        out.append(x * x)
        progress.advance()
    return os.getpid(), out


def test_results_in_shard_order_from_separate_processes_with_progress() -> None:
    prog = Count()
    seen: list[str] = []
    results = run_forked(
        [[1, 2], [3], [4, 5, 6]], square_all, progress=prog, meanwhile=lambda: seen.append("x")
    )
    assert [r[1] for r in results] == [[1, 4], [9], [16, 25, 36]]
    pids = {r[0] for r in results}
    assert len(pids) == 3 and os.getpid() not in pids
    assert prog.n == 6 and seen == ["x"]
    for pid in pids:  # every worker was reaped
        with pytest.raises(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)


def fail_project(part: int, progress: Progress) -> int:
    if part == 2:
        raise TargetError("bad target in worker")
    return part


def fail_bug(part: int, progress: Progress) -> int:
    raise ZeroDivisionError("boom")


def test_a_workers_project_error_is_raised_as_is_and_a_bug_as_scan_failed() -> None:
    with pytest.raises(TargetError, match="bad target in worker"):
        run_forked([1, 2, 3], fail_project, progress=Count())
    with pytest.raises(ScanFailed, match="ZeroDivisionError: boom"):
        run_forked([1], fail_bug, progress=Count())


def hang(part: int, progress: Progress) -> int:
    time.sleep(60)
    return part


def test_a_silent_worker_is_killed_after_the_stall_timeout() -> None:
    t0 = time.monotonic()
    with pytest.raises(ScanFailed, match="sent nothing"):
        run_forked([1], hang, progress=Count(), stall_timeout_s=0.5)
    assert time.monotonic() - t0 < 10
