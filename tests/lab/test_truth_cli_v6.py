"""`twinscan lab truth -6`: the truth of a dual-stack lab for both families (pure: no root)."""

from __future__ import annotations

import csv
import io
import subprocess
import sys

from conftest import DEFAULT_LAB_SPEC


def truth_rows(*args: str) -> list[dict[str, str]]:
    proc = subprocess.run(
        [sys.executable, "-m", "twinscan", "lab", "truth", "--csv", "-", "--spec",
         str(DEFAULT_LAB_SPEC), *args],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    return list(csv.DictReader(io.StringIO(proc.stdout)))


def test_ipv6_rows_mirror_the_ipv4_rows() -> None:
    v4 = truth_rows()
    both = truth_rows("-6")
    assert all(":" not in r["host"] for r in v4)
    six = [r for r in both if ":" in r["host"]]
    assert six and all(r["host"].startswith("2001:db8:") for r in six)
    assert [r for r in both if ":" not in r["host"]] == v4

    # The same open ports over both families: the services listen on both addresses.
    def opened(rows: list[dict[str, str]]) -> set[tuple[str, str, str]]:
        return {(r["technique"], r["proto"], r["port"]) for r in rows if r["state"] == "open"}

    plain4 = [r for r in v4 if r["host"] == "198.18.0.10"]
    plain6 = [r for r in six if r["host"] == "2001:db8:18::a"]
    assert opened(plain6) == opened(plain4) - {("ftp-bounce", "tcp", p) for p in
                                                   {r["port"] for r in plain4}}  # fmt: skip
