"""Peak memory and time against work (hosts x ports): twinscan, twinscan --dask local:2, nmap.

    .venv/bin/python benchmarks/bench_memory_growth.py [--hosts 1,2,4,8,16] [--ports -]
    .venv/bin/python benchmarks/bench_memory_growth.py --render-only

Loopback only (127.0.0.1-N, a connect scan: no privileges needed). Each cell is the median
of ``--repeat`` runs (3), the tools alternating run by run; each run is one child process:
wall time and the peak, over 50 ms samples, of
the summed RSS of its whole process tree (psutil) -- the number the issue's bars are about --
and of the summed PSS (shared pages divided among the processes that share them: forked
workers share most of their parent's pages, which RSS counts once per process). Writes
``benchmarks/results/memory_growth.csv``, ``memory_growth.png`` (work on the x axis) and
``memory_growth.md``, the README's ``results:memory_growth`` block, which it updates
(``twinscan.bench.results_md``); ``--render-only`` rebuilds the ``.md`` and the README block
from the CSV without measuring. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv" / "bin"
RESULTS = ROOT / "benchmarks" / "results"
README = ROOT / "README.md"


def measure(argv: list[str], timeout_s: float = 900) -> tuple[float, float, float, int]:
    """(wall s, peak tree RSS MiB, peak tree PSS MiB, exit code) of one run."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak_rss = peak_pss = 0
    try:
        while proc.poll() is None:
            if time.perf_counter() - t0 > timeout_s:
                proc.kill()
                break
            try:
                root = psutil.Process(proc.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                continue
            rss = pss = 0
            for p in procs:
                with contextlib.suppress(psutil.Error):
                    info = p.memory_full_info()
                    rss += info.rss
                    pss += info.pss
            peak_rss, peak_pss = max(peak_rss, rss), max(peak_pss, pss)
            time.sleep(0.05)
    finally:
        proc.wait()
    return time.perf_counter() - t0, peak_rss / 2**20, peak_pss / 2**20, proc.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--hosts", default="1,2,4,8,16")
    ap.add_argument("--ports", default="-", help="'-' for 1-65535, else an nmap port list")
    ap.add_argument("--tools", default="twinscan,twinscan-dask,nmap")
    ap.add_argument(
        "--repeat", type=int, default=3, help="runs per tool and size (medians are recorded)"
    )
    ap.add_argument("--out", type=Path, default=RESULTS / "memory_growth.csv")
    ap.add_argument(
        "--render-only", action="store_true", help="no scan: OUT.md and the README from OUT.csv"
    )
    args = ap.parse_args()
    if args.render_only:
        render(args.out)
        return 0
    ports = ["-p-"] if args.ports == "-" else ["-p", args.ports]
    n_ports = 65535 if args.ports == "-" else None
    tools = args.tools.split(",")
    rows: list[dict[str, object]] = []
    tmp = Path(tempfile.mkdtemp(prefix="twinscan-mem-"))
    try:
        for hosts in [int(h) for h in args.hosts.split(",")]:
            target = "127.0.0.1" if hosts == 1 else f"127.0.0.1-{hosts}"
            runs = {
                "twinscan": [str(VENV / "twinscan"), "scan", "-sT", *ports, target],
                "twinscan-dask": [str(VENV / "twinscan"), "scan", "-sT", *ports, target]
                + ["--dask", "local:2"],
                "nmap": ["nmap", "-sT", *ports, "-T4", "-n", "-Pn", target],
            }
            outs = {
                "twinscan": ["--csv", str(tmp / "t.csv")],
                "twinscan-dask": ["--csv", str(tmp / "d.csv")],
                "nmap": ["-oX", str(tmp / "n.xml")],
            }
            chosen = [t for t in tools if t != "nmap" or shutil.which("nmap") is not None]
            # the tools alternate run by run; each cell is the median of --repeat runs
            samples: dict[str, list[tuple[float, float, float, int]]] = {t: [] for t in chosen}
            for _ in range(max(1, args.repeat)):
                for tool in chosen:
                    samples[tool].append(measure(runs[tool] + outs[tool]))
            for tool in chosen:
                got = samples[tool]
                code = max(g[3] for g in got)
                cell: dict[str, object] = {"tool": tool, "hosts": hosts}
                rows.append(cell)
                cell.update(
                    ports=n_ports or args.ports,
                    probes=hosts * (n_ports or 0),
                    wall_s=round(statistics.median(g[0] for g in got), 2),
                    peak_rss_mib=round(statistics.median(g[1] for g in got), 1),
                    peak_pss_mib=round(statistics.median(g[2] for g in got), 1),
                    exit=code,
                    runs=len(got),
                )
                print(cell, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    cpus = len(os.sched_getaffinity(0))
    print(f"wrote {args.out} (cpus: {cpus})")
    plot(rows, args.out.with_suffix(".png"))
    render(args.out)
    return 0


def render(out: Path) -> None:
    """OUT.md from OUT.csv, and the README's block when OUT is the recorded results."""
    from twinscan.bench.results_md import publish

    is_default = out.resolve() == (RESULTS / "memory_growth.csv").resolve()
    md = publish("memory_growth", out, README if is_default else None)
    print(f"wrote {md}" + (f" and {README.name}" if is_default else ""))


def plot(rows: list[dict[str, object]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover - matplotlib is a dev dependency
        print("matplotlib missing: no plot", file=sys.stderr)
        return
    fig, (ax_mem, ax_time) = plt.subplots(1, 2, figsize=(11, 4))
    for tool in sorted({str(r["tool"]) for r in rows}):
        mine = [r for r in rows if r["tool"] == tool]
        x = [float(str(r["probes"])) for r in mine]
        ax_mem.plot(x, [float(str(r["peak_rss_mib"])) for r in mine], "o-", label=tool)
        ax_time.plot(x, [float(str(r["wall_s"])) for r in mine], "o-", label=tool)
    ax_mem.set(xlabel="probes (hosts x 65535 ports)", ylabel="peak RSS of the process tree (MiB)")
    ax_time.set(xlabel="probes (hosts x 65535 ports)", ylabel="wall time (s)")
    for ax in (ax_mem, ax_time):
        ax.set_xscale("log", base=2)
        ax.grid(True, alpha=0.3)
        ax.legend()
    fig.suptitle("connect scan of 127.0.0.1-N, all TCP ports (loopback)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    print(f"wrote {path}")


if __name__ == "__main__":
    raise SystemExit(main())
