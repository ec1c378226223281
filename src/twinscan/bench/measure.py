"""Run one child process and measure it: wall time, CPU time, peak RSS of its tree, packets.

* CPU: ``os.wait4`` returns the child's rusage, which includes every descendant it waited for
  (nmap under python-nmap, for instance), so user+sys covers the whole tree.
* Peak RSS: psutil samples the child and all its descendants every ``interval_s`` and sums
  their RSS; the peak of those sums is reported. ``ru_maxrss`` (the largest single process) is
  kept for reference only: on Linux it also counts the forked copy of the harness before exec.
* Packets: the caller passes a counter (``iface_tx_packets`` or ``nft_counter``) read before
  and after the run.

Every run has a timeout; a run past it gets SIGKILL on its whole process group.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence

import psutil

Counter = Callable[[], int]


@dataclasses.dataclass(frozen=True, slots=True)
class Measurement:
    wall_s: float
    cpu_user_s: float
    cpu_sys_s: float
    #: Peak of the summed RSS of the process tree (sampled), in MiB.
    peak_rss_mib: float
    #: ``ru_maxrss`` of the largest single process of the tree, in MiB (includes the pre-exec fork).
    max_rss_single_mib: float
    samples: int
    #: None when the run was killed at its timeout.
    exit_code: int | None
    packets: int | None
    stderr_tail: str = ""

    @property
    def cpu_s(self) -> float:
        return self.cpu_user_s + self.cpu_sys_s

    @property
    def timed_out(self) -> bool:
        return self.exit_code is None


def tree_rss(pid: int) -> int:
    """Summed RSS (bytes) of ``pid`` and its descendants; 0 once they are gone."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for proc in procs:
        with contextlib.suppress(psutil.Error):
            total += proc.memory_info().rss
    return total


def run_measured(
    argv: Sequence[str],
    *,
    timeout_s: float,
    interval_s: float = 0.02,
    packets: Counter | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> Measurement:
    """Run ``argv`` to its end (or its timeout) and measure it."""
    before = packets() if packets is not None else None
    with tempfile.TemporaryFile() as err:
        start = clock()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
        )
        peak, samples = 0, 0
        deadline = start + timeout_s
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                end = clock()
                exit_code: int | None = os.waitstatus_to_exitcode(status)
                break
            peak = max(peak, tree_rss(proc.pid))
            samples += 1
            if clock() > deadline:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                _, status, usage = os.wait4(proc.pid, 0)
                end = clock()
                exit_code = None
                break
            time.sleep(interval_s)
        proc.returncode = exit_code if exit_code is not None else -signal.SIGKILL
        err.seek(0)
        tail = err.read()[-2000:].decode(errors="replace").strip()
    after = packets() if packets is not None else None
    single = usage.ru_maxrss / 1024  # KiB on Linux
    return Measurement(
        wall_s=end - start,
        cpu_user_s=usage.ru_utime,
        cpu_sys_s=usage.ru_stime,
        peak_rss_mib=peak / 2**20,
        max_rss_single_mib=single,
        samples=samples,
        exit_code=exit_code,
        packets=None if before is None or after is None else after - before,
        stderr_tail=tail,
    )


def _run_json(argv: list[str]) -> object:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=15, check=True)
    return json.loads(proc.stdout)


def iface_tx_packets(namespace: str, interface: str) -> int:
    """Packets ``interface`` in ``namespace`` has transmitted (its stats64 counter)."""
    data = _run_json(["ip", "-n", namespace, "-s", "-j", "link", "show", "dev", interface])
    assert isinstance(data, list) and data
    return int(data[0]["stats64"]["tx"]["packets"])


def nft_counter(namespace: str, table: str, name: str) -> int:
    """Packets counted by the named nftables counter ``inet table name`` in ``namespace``."""
    argv = ["ip", "netns", "exec", namespace, "nft", "-j", "list", "counter", "inet", table, name]
    data = _run_json(argv)
    assert isinstance(data, dict)
    for item in data.get("nftables", []):
        if "counter" in item:
            return int(item["counter"]["packets"])
    raise ValueError(f"no counter {table}/{name} in {namespace}")


def cpu_count() -> int:
    return len(os.sched_getaffinity(0))


def machine_note() -> str:
    """A one-line description of the machine the numbers come from."""
    load = os.getloadavg()[0]
    mem = psutil.virtual_memory().total / 2**30
    return f"{cpu_count()} CPUs, {mem:.1f} GiB RAM, load {load:.2f} at start, Linux {os.uname().release}"
