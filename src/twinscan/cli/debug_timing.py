"""``--debug-timing``: the marks of ``core.phases`` on stderr when the command ends.

The origin is the process's start as the kernel records it (``/proc/self/stat``, field 22: clock
ticks since boot, usually 10 ms each), placed on the monotonic clock through the boot-time
clock; where that cannot be read, the first mark is the origin.
"""

from __future__ import annotations

import os
import sys
import time

from twinscan.core import phases


def process_start() -> float | None:
    """When this process started, on ``time.perf_counter``'s clock (to a clock tick)."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])  # field 22 (starttime)
        hz = os.sysconf("SC_CLK_TCK")
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / hz
    except (OSError, ValueError, IndexError, AttributeError):
        return None
    return time.perf_counter() - age


def print_timing() -> None:
    """Print the marks (on stderr) if the command asked for them."""
    if not phases.shown():
        return
    taken = phases.marks()
    start = process_start()
    if start is not None and (not taken or start <= taken[0][1]):
        origin, name = start, f"process start (kernel's record, to 1/{os.sysconf('SC_CLK_TCK')} s)"
    elif taken:
        origin, name = taken[0][1], taken[0][0]
    else:
        return
    for line in phases.render(taken, origin, name):
        print(line, file=sys.stderr)
