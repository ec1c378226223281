"""``twinscan audit`` outside the lab: reports, defaults, exit codes, owners on loopback.

Scans here go to 127.0.0.1 only (connect scans of a listener this test opens).
"""

from __future__ import annotations

import csv
import io
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinscan.audit.findings import Cell, audit
from twinscan.audit.policy import parse_policy
from twinscan.audit.render import (
    ROW_COLUMNS,
    AuditReport,
    csv_text,
    html_text,
    json_text,
    text_report,
)
from twinscan.audit.run import version_ports
from twinscan.cli.audit import audit_options
from twinscan.cli.options import ScanOptions
from twinscan.core.vocab import PortState, Proto

TWINSCAN = [sys.executable, "-m", "twinscan"]
T, U = Proto.TCP, Proto.UDP

POLICY = parse_policy(
    '[[rule]]\nname = "web"\nhosts = "198.18.0.10"\nallow = "T:22"\nexpect = "T:443,U:53"\n'
    'deny = "T:23"\nfirewalled = "T:3389"\n'
)


def _report() -> AuditReport:
    cells = [
        Cell("198.18.0.10", T, 23, "syn", PortState.OPEN, "syn-ack"),
        Cell("198.18.0.10", T, 443, "syn", PortState.FILTERED, "no-response"),
        Cell("198.18.0.10", T, 3389, "syn", PortState.CLOSED, "reset"),
        Cell("198.18.0.10", U, 53, "udp", PortState.OPEN_FILTERED, "no-response"),
        Cell("198.18.0.10", T, 22, "syn", PortState.OPEN, "syn-ack"),
        Cell("198.18.0.11", T, 8080, "syn", PortState.OPEN, "syn-ack"),
    ]
    found = audit(cells, POLICY, hosts=["198.18.0.10", "198.18.0.11"])
    return AuditReport(found, "p.toml", ("198.18.0.10", "198.18.0.11"), ("syn", "udp"))


def test_csv_json_html_hold_one_row_per_finding() -> None:
    report = _report()
    rows = list(csv.DictReader(io.StringIO(csv_text(report))))
    assert tuple(rows[0]) == ROW_COLUMNS
    assert [(r["host"], r["proto"], r["port"], r["finding"]) for r in rows] == [
        ("198.18.0.10", "tcp", "23", "denied-open"),
        ("198.18.0.10", "tcp", "3389", "not-firewalled"),
        ("198.18.0.11", "tcp", "8080", "unexpected-open"),
        ("198.18.0.10", "tcp", "443", "missing-expected"),
        ("198.18.0.10", "udp", "53", "unconfirmed"),
    ]
    assert rows[0]["rule"] == "web" and rows[2]["rule"] == "no rule covers this host"
    assert (
        rows[0]["firewall"]
        == "nft add rule inet filter input ip daddr 198.18.0.10 tcp dport 23 drop"
    )
    doc = json.loads(json_text(report))
    assert doc["compliant"] is False and len(doc["findings"]) == 5
    assert doc["counts"]["denied-open"] == 1
    page = html_text(report)
    assert page.count("<table>") == 2 and "http" not in page.replace("http-equiv", "")
    assert page.index("198.18.0.10") < page.index("198.18.0.11")


def test_text_report_groups_by_host_worst_first() -> None:
    text = text_report(_report())
    assert text.index("198.18.0.10  (4 findings)") < text.index("198.18.0.11  (1 finding)")
    block = text.split("198.18.0.11")[0]
    assert block.index("denied-open") < block.index("not-firewalled") < block.index("unconfirmed")
    assert "5 findings: 1 denied-open, 1 not-firewalled" in text


def test_default_ports_and_techniques() -> None:
    opts = ScanOptions(targets=["198.18.0.10"], scan_types=[])
    as_root, letters, notes = audit_options(opts, POLICY, is_root=True)
    assert as_root.ports == "T:1-65535,U:53" and letters == "SU" and not notes
    as_user, letters, notes = audit_options(opts, POLICY, is_root=False)
    assert letters == "T" and "UDP ports not scanned" in notes[0]
    given = ScanOptions(targets=["x"], scan_types=[], ports="22,80")
    assert audit_options(given, POLICY, is_root=True)[0].ports == "22,80"
    assert audit_options(given, POLICY, is_root=True)[1] == "S"
    given_udp = ScanOptions(targets=["x"], scan_types=[], ports="T:22,U:53")
    assert audit_options(given_udp, POLICY, is_root=True)[1] == "SU"
    only_udp = ScanOptions(targets=["x"], scan_types=[], ports="U:53")
    assert audit_options(only_udp, POLICY, is_root=True)[1] == "U"
    assert audit_options(only_udp, POLICY, is_root=False)[1] == "U"
    fast = ScanOptions(targets=["x"], scan_types=[], fast=True)
    assert audit_options(fast, POLICY, is_root=True)[0].ports is None
    chosen = ScanOptions(targets=["x"], scan_types=["A"])
    assert audit_options(chosen, POLICY, is_root=True)[1] == ""


def test_versions_ask_only_for_open_finding_ports() -> None:
    assert version_ports(_report().audit.findings) == {
        "198.18.0.10": "T:23",
        "198.18.0.11": "T:8080",
    }


def _run(*argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TWINSCAN, "audit", *argv], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_a_broken_policy_exits_2_with_one_line_before_scanning(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nhosts = "127.0.0.1"\nalow = "T:22"\n')
    proc = _run("127.0.0.1", "--policy", str(bad), "-sT", "-p", "22")
    assert proc.returncode == 2
    assert (
        proc.stderr == f"twinscan: error: {bad}: line 3: rule 1: unknown key 'alow' "
        "(a rule takes allow, deny, expect, firewalled, hosts, name)\n"
    )
    assert proc.stdout == ""


def test_a_missing_baseline_exits_2(tmp_path: Path) -> None:
    policy = tmp_path / "p.toml"
    policy.write_text('[[rule]]\nhosts = "127.0.0.1"\ndeny = 23\n')
    proc = _run("127.0.0.1", "--policy", str(policy), "--baseline", str(tmp_path / "no.csv"))
    assert proc.returncode == 2 and "no such file" in proc.stderr


@pytest.fixture
def listener() -> Iterator[int]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_loopback_audit_names_the_owner(listener: int, tmp_path: Path) -> None:
    """A denied port this test listens on: denied-open, owned by this very process."""
    policy = tmp_path / "p.toml"
    policy.write_text(f'[[rule]]\nhosts = "127.0.0.1"\ndeny = "T:{listener}"\n')
    out = tmp_path / "a.csv"
    ports = f"T:{listener},{listener + 1 if listener < 65535 else listener - 1}"
    proc = _run("127.0.0.1", "--policy", str(policy), "-sT", "-p", ports, "--csv", str(out))
    assert proc.returncode == 1, proc.stderr
    (row,) = list(csv.DictReader(out.open()))
    assert (row["port"], row["finding"], row["state"]) == (str(listener), "denied-open", "open")
    assert row["pid"] == str(os.getpid())  # psutil always names our own process
    assert "denied-open" in proc.stdout

    policy.write_text(f'[[rule]]\nhosts = "127.0.0.1"\nexpect = "T:{listener}"\n')
    proc = _run("127.0.0.1", "--policy", str(policy), "-sT", "-p", ports, "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["compliant"] is True
    assert "compliant: no findings" in proc.stderr
