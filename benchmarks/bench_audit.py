"""What an audit costs over the scan it runs: 1 host x 65535 TCP ports on loopback (goal <= 1.2x).

    sudo .venv/bin/python benchmarks/bench_audit.py [--runs 7] [--technique S]
    .venv/bin/python benchmarks/bench_audit.py --render-only

Loopback only (127.0.0.1). Runs, alternately (who goes first swaps every run, one warm-up pair
first):

    twinscan scan -sS -p- 127.0.0.1
    twinscan audit 127.0.0.1 --policy fixtures/policies/loopback.toml -sS

(the audit's default ports are every TCP port, the policy names no UDP port), prints each pair,
the medians and the median of the per-pair ratios, and writes them to
benchmarks/results/audit_overhead.csv, then renders it into audit_overhead.md and the README's
``results:audit_overhead`` block (``twinscan.bench.results_md``; ``--render-only`` does only
that). Recorded, never asserted. -sS needs root; --technique T measures the connect scan
without it.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import statistics
import subprocess
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWINSCAN = str(REPO / ".venv" / "bin" / "twinscan")
POLICY = REPO / "fixtures" / "policies" / "loopback.toml"
OUT = REPO / "benchmarks" / "results" / "audit_overhead.csv"
README = REPO / "README.md"


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=600)
    elapsed = time.perf_counter() - t0
    if proc.returncode not in (0, 1):  # audit: 1 = findings (whatever else listens on loopback)
        raise SystemExit(f"{argv[1]} failed ({proc.returncode}): {proc.stderr.decode()[-300:]}")
    return elapsed


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--technique", default="S", choices=["S", "T"])
    ap.add_argument(
        "--render-only", action="store_true", help="no scan: the .md and the README from the CSV"
    )
    args = ap.parse_args()
    if args.render_only:
        render()
        return 0
    tech = f"-s{args.technique}"
    commands = {
        "scan": [TWINSCAN, "scan", tech, "-p-", "127.0.0.1"],
        "audit": [TWINSCAN, "audit", "127.0.0.1", "--policy", str(POLICY), tech],
    }
    for argv in commands.values():  # warm-up: page cache, template cache
        timed(argv)
    times: dict[str, list[float]] = {"scan": [], "audit": []}
    ratios: list[float] = []
    for run in range(args.runs):
        order = ["scan", "audit"] if run % 2 == 0 else ["audit", "scan"]
        pair = {name: timed(commands[name]) for name in order}
        for name, t in pair.items():
            times[name].append(t)
        ratios.append(pair["audit"] / pair["scan"])
        print(f"run {run + 1}: scan {pair['scan']:.3f} s, audit {pair['audit']:.3f} s, "
              f"ratio {ratios[-1]:.3f}")  # fmt: skip
    med = {name: statistics.median(ts) for name, ts in times.items()}
    ratio = statistics.median(ratios)
    print(f"median: scan {med['scan']:.3f} s, audit {med['audit']:.3f} s, "
          f"median ratio {ratio:.3f} (goal <= 1.2)")  # fmt: skip
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    load = os.getloadavg()[0]
    with OUT.open("w", newline="") as fh:
        w = csv.writer(fh, lineterminator="\n")
        w.writerow(["measured", "cpus", "load", "technique", "run", "scan_s", "audit_s", "ratio"])
        for i, (s, a, r) in enumerate(zip(times["scan"], times["audit"], ratios, strict=True)):
            w.writerow([when, os.cpu_count(), f"{load:.2f}", tech, i + 1, f"{s:.3f}", f"{a:.3f}",
                        f"{r:.3f}"])  # fmt: skip
        w.writerow([when, os.cpu_count(), f"{load:.2f}", tech, "median", f"{med['scan']:.3f}",
                    f"{med['audit']:.3f}", f"{ratio:.3f}"])  # fmt: skip
    print(f"wrote {OUT.relative_to(REPO)}")
    render()
    return 0


def render() -> None:
    from twinscan.bench.results_md import publish

    md = publish("audit_overhead", OUT, README)
    print(f"wrote {md.relative_to(REPO)} and {README.name}")


if __name__ == "__main__":
    raise SystemExit(main())
