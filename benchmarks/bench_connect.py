"""Whole-process wall time of the connect scan (-sT) vs nmap on loopback (alternating, medians).

    .venv/bin/python benchmarks/bench_connect.py [--runs 7] [--ports -]

Loopback only (127.0.0.1); needs no privileges. Runs

    twinscan scan -sT -p- 127.0.0.1 --csv /dev/null
    nmap -sT -p- -T4 -n 127.0.0.1 -oX /dev/null

alternately (who goes first swaps every run, so drift hits both), prints each pair and the
median of the per-run ratios and of each tool's times. Recorded in the README, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(__file__).resolve().parents[1] / ".venv" / "bin"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(
        argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600
    )
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--ports", default="-")
    args = ap.parse_args()
    ports = ["-p-"] if args.ports == "-" else ["-p", args.ports]
    ours = [str(VENV / "twinscan"), "scan", "-sT", *ports, "127.0.0.1", "--csv", "/dev/null"]
    nmap = ["nmap", "-sT", *ports, "-T4", "-n", "127.0.0.1", "-oX", "/dev/null"]
    print(f"cpus: {len(os.sched_getaffinity(0))}  load: {os.getloadavg()[0]:.2f}")
    t_ours: list[float] = []
    t_nmap: list[float] = []
    for i in range(args.runs):
        if i % 2 == 0:
            t_ours.append(timed(ours))
            t_nmap.append(timed(nmap))
        else:
            t_nmap.append(timed(nmap))
            t_ours.append(timed(ours))
        print(
            f"run {i + 1}: twinscan {t_ours[-1]:.2f}s  nmap {t_nmap[-1]:.2f}s  "
            f"ratio {t_ours[-1] / t_nmap[-1]:.2f}x"
        )
    ratios = [o / n for o, n in zip(t_ours, t_nmap, strict=True)]
    mo, mn = statistics.median(t_ours), statistics.median(t_nmap)
    print(
        f"median: twinscan {mo:.2f}s  nmap {mn:.2f}s  "
        f"median ratio {statistics.median(ratios):.2f}x (ratio of medians {mo / mn:.2f}x)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
