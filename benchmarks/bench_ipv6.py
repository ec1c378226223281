"""IPv6 against IPv4 on the same work (issue #17: within 10% in speed and memory growth).

    sudo .venv/bin/python benchmarks/bench_ipv6.py [--runs 5] [--lab]
    .venv/bin/python benchmarks/bench_ipv6.py --render-only

Loopback: ``twinscan scan -sS -p- 127.0.0.1`` against the same scan of ``::1``, alternately
(who goes first swaps every run, one warm-up pair first); wall time and the child's peak RSS
(``getrusage``: the memory growth of the scan process).

``--lab``: a dual-stack lab of its own (prefix ``tsb6``), then from its scanner namespace the
same scan over every lab host's IPv4 addresses and over their IPv6 addresses (SYN over the
spec's TCP universe, UDP over its UDP universe), twinscan and nmap / nmap -6 side by side.

Prints each pair and the medians and writes benchmarks/results/ipv6.csv, then renders it into
ipv6.md (``twinscan.bench.results_md``; ``--render-only`` does only that). Recorded, never
asserted.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWINSCAN = str(REPO / ".venv" / "bin" / "twinscan")
OUT = REPO / "benchmarks" / "results" / "ipv6.csv"
PREFIX = "tsb6"


def timed(argv: list[str]) -> tuple[float, float]:
    """Wall seconds and the peak RSS (MiB) of ``argv``'s largest child so far."""
    t0 = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=900)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed: {proc.stderr.decode()[-300:]}")
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return elapsed, rss


def pairs(
    name: str, v4: list[str], v6: list[str], runs: int, rows: list[dict[str, object]]
) -> None:
    timed(v4)
    timed(v6)
    times: dict[str, list[float]] = {"ipv4": [], "ipv6": []}
    for run in range(runs):
        order = [("ipv4", v4), ("ipv6", v6)] if run % 2 == 0 else [("ipv6", v6), ("ipv4", v4)]
        for family, argv in order:
            t, rss = timed(argv)
            times[family].append(t)
            rows.append({"workload": name, "family": family, "run": run, "seconds": round(t, 3),
                         "peak_rss_mib": round(rss, 1)})  # fmt: skip
            print(f"{name:28} {family}  {t:7.3f} s")
    m4, m6 = statistics.median(times["ipv4"]), statistics.median(times["ipv6"])
    print(f"{name:28} median ipv4 {m4:.3f} s  ipv6 {m6:.3f} s  ipv6/ipv4 {m6 / m4:.3f}")


def rss_alone(argv: list[str]) -> float:
    """Peak RSS of one run of ``argv`` in a fresh interpreter (RUSAGE_CHILDREN is a maximum)."""
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL,"
        " check=True); print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code, *argv], capture_output=True, text=True)
    return float(out.stdout.strip() or "nan")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--lab", action="store_true")
    ap.add_argument("--render-only", action="store_true", help="no scan: ipv6.md from the CSV")
    args = ap.parse_args()
    if args.render_only:
        render()
        return 0
    rows: list[dict[str, object]] = []
    scan = [TWINSCAN, "scan", "-sS", "-p-", "--csv", "/dev/null"]
    pairs("loopback -sS -p-", [*scan, "127.0.0.1"], [*scan, "-6", "::1"], args.runs, rows)
    for family, target in (("ipv4", "127.0.0.1"), ("ipv6", "::1")):
        extra = ["-6"] if family == "ipv6" else []
        rss = rss_alone([*scan, *extra, target])
        rows.append({"workload": "loopback -sS -p- peak RSS", "family": family, "run": 0,
                     "seconds": "", "peak_rss_mib": round(rss, 1)})  # fmt: skip
        print(f"peak RSS {family}: {rss:.1f} MiB")
    if args.lab:
        from twinscan.lab import load_spec, netns
        from twinscan.request.ports import format_port_list

        spec = load_spec()
        v4 = [h.address for h in spec.hosts]
        v6 = [str(h.address6) for h in spec.hosts]
        inside = ["ip", "netns", "exec", f"{PREFIX}-scan"]
        netns.up(spec, PREFIX)
        try:
            for tech, ports in (("S", spec.tcp_universe()), ("U", spec.udp_universe())):
                p = format_port_list(ports)
                base = [
                    *inside,
                    TWINSCAN,
                    "scan",
                    f"-s{tech}",
                    "-T4",
                    "-p",
                    p,
                    "--csv",
                    "/dev/null",
                ]
                pairs(f"lab twinscan -s{tech}", [*base, *v4], [*base, "-6", *v6], args.runs, rows)
                nmap = [
                    *inside,
                    "nmap",
                    "-n",
                    "-Pn",
                    f"-s{tech}",
                    "-T4",
                    "-p",
                    p,
                    "-oX",
                    "/dev/null",
                ]
                pairs(f"lab nmap -s{tech}", [*nmap, *v4], [*nmap, "-6", *v6], 1, rows)
        finally:
            netns.down(PREFIX)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with OUT.open("w", newline="") as f:
        f.write(f"# benchmarks/bench_ipv6.py, {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC\n")
        writer = csv.DictWriter(f, ["workload", "family", "run", "seconds", "peak_rss_mib"])
        writer.writeheader()
        writer.writerows(rows)
    print(f"wrote {OUT}")
    render()
    return 0


def render() -> None:
    from twinscan.bench.results_md import publish

    print(f"wrote {publish('ipv6', OUT, REPO / 'README.md')}")


if __name__ == "__main__":
    raise SystemExit(main())
