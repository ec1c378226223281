"""``twinscan bench --quick`` end to end: it brings up its own bench lab, runs, and tears down.

Proves the harness works on this machine (as ``make test`` does once); times are not asserted.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twinscan.bench.render import RUN_COLUMNS, SUMMARY_COLUMNS

pytestmark = [
    pytest.mark.lab,
    pytest.mark.nmap,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (network namespaces)"),
    pytest.mark.skipif(shutil.which("nmap") is None, reason="needs the nmap binary"),
    pytest.mark.skipif(shutil.which("nft") is None, reason="needs nftables"),
]


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    return {line.split()[0] for line in out.stdout.splitlines() if line.strip()}


def test_bench_quick_writes_sane_results(tmp_path: Path) -> None:
    import pandas as pd

    proc = subprocess.Popen(
        [sys.executable, "-m", "twinscan", "bench", "--quick", "--out", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        _, stderr = proc.communicate(timeout=170)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr[-2000:]
    # the bench lab's prefix is "tb" + the bench process's PID (other labs may come and go)
    leftovers = {n for n in _namespaces() if n.startswith(f"tb{proc.pid % 1_000_000}-")}
    assert not leftovers, f"the bench lab was not torn down: {sorted(leftovers)}"

    runs = pd.read_csv(tmp_path / "runs.csv")
    assert tuple(runs.columns) == RUN_COLUMNS
    assert set(runs["engine"]) >= {"twinscan", "twinscan-nmap", "nmap"}
    # plain nmap must work on every quick workload, with sane numbers and the right verdicts
    nmap = runs[runs["engine"] == "nmap"]
    assert (nmap["status"] == "ok").all()
    assert set(nmap["workload"]) == set(runs["workload"])
    assert (nmap["wall_s"] > 0).all() and (nmap["cpu_s"] > 0).all()
    assert (nmap["peak_rss_mib"] > 1).all() and (nmap["packets"] >= nmap["probes"]).all()
    assert (nmap["accuracy"] >= 0.99).all() and (nmap["open_recall"] == 1.0).all()
    # an engine that fails is recorded as such, with a reason, never with numbers
    failed = runs[runs["status"] != "ok"]
    assert failed["accuracy"].isna().all() and (failed["error"].str.len() > 0).all()

    summary = pd.read_csv(tmp_path / "summary.csv")
    assert tuple(summary.columns) == SUMMARY_COLUMNS
    base = summary[summary["engine"] == "nmap"]
    assert (base["wall_ratio"] == 1.0).all()
    md = (tmp_path / "summary.md").read_text()
    assert "<!-- bench:begin -->" in md and "| `lab-2x1k-syn` | nmap |" in md
    assert (tmp_path / "bench.png").read_bytes()[:4] == b"\x89PNG"
