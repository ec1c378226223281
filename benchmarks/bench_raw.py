"""Whole-process wall time of the native SYN scan vs nmap on loopback (alternating, medians).

    sudo .venv/bin/python benchmarks/bench_raw.py [--runs 5] [--ports -]

Loopback only (127.0.0.1). Prints each run and the median ratio twinscan/nmap.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

VENV = Path(__file__).resolve().parents[1] / ".venv" / "bin"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - t0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--ports", default="-")
    args = ap.parse_args()
    ports = ["-p-"] if args.ports == "-" else ["-p", args.ports]
    ours = [str(VENV / "twinscan"), "scan", "-sS", *ports, "127.0.0.1"]
    nmap = ["nmap", "-sS", *ports, "-T4", "-n", "127.0.0.1"]
    t_ours: list[float] = []
    t_nmap: list[float] = []
    for i in range(args.runs):
        t_ours.append(timed(ours))
        t_nmap.append(timed(nmap))
        print(f"run {i + 1}: twinscan {t_ours[-1]:.2f}s  nmap {t_nmap[-1]:.2f}s")
    mo, mn = statistics.median(t_ours), statistics.median(t_nmap)
    print(f"median: twinscan {mo:.2f}s  nmap {mn:.2f}s  ratio {mo / mn:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
