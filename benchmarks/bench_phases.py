"""Where a loopback scan's wall time goes, phase by phase, with nmap's whole run beside it.

    sudo .venv/bin/python benchmarks/bench_phases.py [--runs 5]
    .venv/bin/python benchmarks/bench_phases.py --render-only

For each workload (1000 TCP ports with SYN, 1000 UDP ports, all 65535 TCP ports with SYN, on
127.0.0.1, ``-T4``; twinscan writes ``--csv``, and in the last workload ``-oX`` as nmap does) it
runs ``twinscan scan ... --debug-timing`` and ``nmap ... -oX`` one after the other, who goes first swapping every run, round by round over the workloads, after one
warm-up pair of each. twinscan prints its marks on the monotonic clock
(``twinscan.core.phases``); this script notes the same clock just before it spawns the scan and
when it has reaped it, so every mark is measured from the spawn (Python's own start-up
included) and the exit (from the command's return to the process's end: ``cli.console``
skips the interpreter's teardown when nothing is left for it) is measured too.

Writes benchmarks/results/phases.csv (every mark of every run) and renders it into phases.md and
the README's ``results:phases`` block (``twinscan.bench.results_md``; ``--render-only`` does only
that). Recorded, never asserted.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "benchmarks" / "results" / "phases.csv"
TARGET = "127.0.0.1"
#: (name, scan options, twinscan's output option); nmap always writes -oX
WORKLOADS = (
    ("1000-port SYN", ["-sS", "-p", "1-1000"], "--csv"),
    ("1000-port UDP", ["-sU", "-p", "1-1000"], "--csv"),
    ("65535-port SYN", ["-sS", "-p-"], "--csv"),
    ("65535-port SYN, `-oX`", ["-sS", "-p-"], "-oX"),
)


def twinscan() -> list[str]:
    from twinscan.bench.plan import twinscan_command

    return twinscan_command(sys.executable)


def run_twinscan(args: list[str], output: str) -> list[tuple[str, float]]:
    """(mark, ms since the spawn) for every mark of one run, then ("exit", ms at reaping)."""
    from twinscan.core.phases import parse

    argv = [*twinscan(), "scan", *args, "-T4", TARGET, output, "/dev/null", "--debug-timing"]
    spawned = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    reaped = time.perf_counter()
    stderr = proc.stderr.decode(errors="replace")
    parsed = parse(stderr.splitlines())
    if proc.returncode != 0 or parsed is None:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}): {stderr[-300:]}")
    _origin, marks = parsed
    return [(name, (at - spawned) * 1000) for name, at in marks] + [
        ("exit", (reaped - spawned) * 1000)
    ]


def run_nmap(args: list[str]) -> float:
    argv = ["nmap", "-n", "-Pn", "--reason", *args, "-T4", "-oX", "/dev/null", TARGET]
    spawned = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=300)
    reaped = time.perf_counter()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-300:]}")
    return (reaped - spawned) * 1000


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--render-only", action="store_true", help="no scan: phases.md from the CSV")
    args = ap.parse_args()
    if args.render_only:
        render()
        return 0
    if os.geteuid() != 0:
        raise SystemExit("SYN and UDP scans need root: run with sudo")
    rows: list[dict[str, object]] = []
    for _workload, scan_args, output in WORKLOADS:  # warm-up: caches, page cache
        run_twinscan(scan_args, output), run_nmap(scan_args)
    # Round by round over every workload, so that a machine getting slower or faster for a
    # while touches each workload and both tools alike.
    for run in range(args.runs):
        for workload, scan_args, output in WORKLOADS:
            for tool in ("twinscan", "nmap") if run % 2 == 0 else ("nmap", "twinscan"):
                if tool == "nmap":
                    marks = [("exit", run_nmap(scan_args))]
                else:
                    marks = run_twinscan(scan_args, output)
                for mark, ms in marks:
                    rows.append({"workload": workload, "tool": tool, "run": run,
                                 "mark": mark, "ms": round(ms, 2)})  # fmt: skip
                print(f"{workload:22} {tool:9} run {run}: {marks[-1][1]:8.1f} ms")
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        f.write(
            f"# benchmarks/bench_phases.py --runs {args.runs}, "
            f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC, {os.cpu_count()} CPUs\n"
        )
        writer = csv.DictWriter(f, ["workload", "tool", "run", "mark", "ms"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")
    render()
    return 0


def render() -> None:
    from twinscan.bench.results_md import publish

    print(f"wrote {publish('phases', OUT, REPO / 'README.md')}")


if __name__ == "__main__":
    raise SystemExit(main())
