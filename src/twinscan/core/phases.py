"""Where a command's time goes: named marks on the monotonic clock (``scan --debug-timing``).

The marks are always taken -- a handful per run, one list append each -- so the code that
takes them does not ask whether anyone will look; ``twinscan scan --debug-timing`` prints them
at exit (``cli.debug_timing``), and ``benchmarks/bench_phases.py`` reads that output to split a
scan's wall time into start-up, planning, probing, writing and exit. ``time.perf_counter`` is
``CLOCK_MONOTONIC`` on Linux: one clock for every process of the machine, so another process
(the benchmark) can place these marks on its own timeline.

``render`` is pure: marks and an origin in, lines out.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence

Mark = tuple[str, float]

_LINE = re.compile(r"\s*(-?\d+\.\d) ms\s+([+-]\d+\.\d) ms  (.+)")

_marks: list[Mark] = []
_shown = False


def mark(name: str, clock: Callable[[], float] = time.perf_counter) -> None:
    """Note that ``name`` happened now."""
    _marks.append((name, clock()))


def marks() -> list[Mark]:
    return list(_marks)


def show() -> None:
    """Print the marks when the command ends (``--debug-timing``)."""
    global _shown
    _shown = True


def shown() -> bool:
    return _shown


def reset() -> None:
    global _shown
    _marks.clear()
    _shown = False


def render(taken: Sequence[Mark], origin: float, origin_name: str) -> list[str]:
    """One line per mark: milliseconds since ``origin``, milliseconds since the mark before,
    the name; the first line names the origin and gives it on the monotonic clock (seconds), so
    that a process that knows the clock can place every mark on its own timeline."""
    lines = [f"debug timing: 0 ms = {origin_name} (CLOCK_MONOTONIC {origin:.6f} s)"]
    before = origin
    for name, at in taken:
        lines.append(f"{(at - origin) * 1000:9.1f} ms {(at - before) * 1000:+9.1f} ms  {name}")
        before = at
    return lines


def parse(lines: Sequence[str]) -> tuple[float, list[Mark]] | None:
    """``render``'s output back into (origin, marks on the monotonic clock); None when the lines
    hold no ``debug timing`` header. Lines around the block (a report, a progress bar) are
    skipped."""
    origin: float | None = None
    out: list[Mark] = []
    for line in lines:
        if line.startswith("debug timing: ") and "CLOCK_MONOTONIC " in line:
            text = line.rsplit("CLOCK_MONOTONIC ", 1)[1].removesuffix(" s)")
            try:
                origin = float(text)
            except ValueError:
                return None
            out = []
            continue
        if origin is None:
            continue
        found = _LINE.fullmatch(line)
        if found is not None:
            out.append((found[3], origin + float(found[1]) / 1000))
    return None if origin is None else (origin, out)
