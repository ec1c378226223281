"""``twinscan audit`` on the default lab, through the real CLI inside the scanner namespace.

Exact findings for a violated policy (exit 1), none for a compliant one (exit 0), a baseline with
changed ports (newly-open / newly-closed), a broken policy (exit 2, one line), and for every
technique the findings the lab's truth table predicts, cell for cell.
"""

from __future__ import annotations

import csv
import io
import sys
from pathlib import Path

import pytest

from conftest import REPO
from twinscan.audit.findings import Cell, audit
from twinscan.audit.policy import load_policy
from twinscan.core.vocab import PortState, Proto, Technique
from twinscan.request.ports import PortPlan

pytestmark = pytest.mark.lab

TWINSCAN = [sys.executable, "-m", "twinscan"]
POLICIES = REPO / "fixtures" / "policies"
PORTS = "T:1-120,443,3389,8080,8443,U:7,9,53,67-69,123,161"
HOSTS = ["198.18.0.10", "198.18.0.11"]

VIOLATED = {
    ("198.18.0.10", "tcp", 80, "denied-open"),
    ("198.18.0.10", "tcp", 3389, "not-firewalled"),
    ("198.18.0.10", "tcp", 8443, "missing-expected"),
    ("198.18.0.10", "udp", 7, "unexpected-open"),
    ("198.18.0.10", "udp", 9, "unconfirmed"),
    ("198.18.0.11", "tcp", 110, "not-firewalled"),
    ("198.18.0.11", "tcp", 8080, "missing-expected"),
    ("198.18.0.11", "udp", 53, "unexpected-open"),
    ("198.18.0.11", "udp", 69, "not-firewalled"),
}


def _audit(lab, *argv: str):  # type: ignore[no-untyped-def]
    proc = lab.run([*TWINSCAN, "audit", *argv, "-T4", "--csv", "-"], timeout=240)
    rows = list(csv.DictReader(io.StringIO(proc.stdout))) if proc.stdout else []
    return proc, {(r["host"], r["proto"], int(r["port"]), r["finding"]) for r in rows}


def test_a_violated_policy_gives_exactly_its_findings(lab) -> None:  # type: ignore[no-untyped-def]
    proc, found = _audit(lab, *HOSTS, "--policy", str(POLICIES / "lab-violated.toml"), "-p", PORTS)
    assert proc.returncode == 1, proc.stderr
    assert found == VIOLATED
    assert "9 findings" in proc.stderr


def test_a_compliant_policy_exits_0(lab) -> None:  # type: ignore[no-untyped-def]
    proc, found = _audit(lab, *HOSTS, "--policy", str(POLICIES / "lab-compliant.toml"), "-p", PORTS)
    assert proc.returncode == 0, proc.stderr
    assert found == set()
    assert "compliant: no findings" in proc.stderr


def test_a_baseline_with_changed_ports(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The baseline says 22 was closed and 23 open; now 22 is open and 23 closed."""
    base = tmp_path / "base.csv"
    scan = lab.run(
        [*TWINSCAN, "scan", "-sT", "-T4", "-p", "T:20-25", "198.18.0.10", "--csv", str(base)]
    )
    assert scan.returncode == 0, scan.stderr
    text = base.read_text()
    text = text.replace(",tcp,22,open,syn-ack,", ",tcp,22,closed,conn-refused,")
    text = text.replace(",tcp,23,closed,conn-refused,", ",tcp,23,open,syn-ack,")
    base.write_text(text)
    proc, found = _audit(
        lab, "198.18.0.10", "--policy", str(POLICIES / "lab-compliant.toml"),
        "-p", "T:1-30,80,443", "--baseline", str(base),
    )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert found == {
        ("198.18.0.10", "tcp", 22, "newly-open"),
        ("198.18.0.10", "tcp", 23, "newly-closed"),
    }
    assert "baseline: 6 ports compared; 26 could not be compared (26 not in the baseline" in (
        proc.stderr
    )


def test_a_broken_policy_exits_2_with_one_line(lab, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nhosts = "198.18.0.10"\ndeny = "T:23,8x"\n')
    proc = lab.run([*TWINSCAN, "audit", "198.18.0.10", "--policy", str(bad), "-p", "23"])
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1
    assert proc.stderr.startswith(f"twinscan: error: {bad}: line 3: rule 1: bad port list in deny")


def test_versions_name_the_service(lab) -> None:  # type: ignore[no-untyped-def]
    proc = lab.run(
        [
            *TWINSCAN,
            "audit",
            "198.18.0.10",
            "--policy",
            str(POLICIES / "lab-violated.toml"),
            "-p",
            "U:7",
            "-T4",
            "--versions",
            "--csv",
            "-",
        ],  # fmt: skip
        timeout=240,
    )
    assert proc.returncode == 1, proc.stderr
    (row,) = list(csv.DictReader(io.StringIO(proc.stdout)))
    assert (row["port"], row["finding"], row["service"]) == ("7", "unexpected-open", "echo")
    assert "It runs echo" in row["advice"]


TECHNIQUES = [t for t in Technique if t is not Technique.FTP_BOUNCE]


@pytest.mark.parametrize("technique", TECHNIQUES, ids=[t.value for t in TECHNIQUES])
def test_every_technique_gives_the_findings_the_truth_predicts(lab, technique: Technique) -> None:  # type: ignore[no-untyped-def]
    from twinscan.lab.truth import truth_frame

    policy_path = POLICIES / "lab-violated.toml"
    udp = technique is Technique.UDP
    ports = "U:7,9,19,53,67-69,123,137,161" if udp else "T:1-120,443,8080"
    proc, found = _audit(
        lab, *HOSTS, "--policy", str(policy_path), "-p", ports, "-s", technique.letter
    )
    assert proc.returncode in (0, 1), proc.stderr
    from twinscan.request.ports import parse_ports

    plan = parse_ports(ports)
    plan = PortPlan(tcp=() if udp else plan.tcp, udp=plan.udp if udp else ())
    truth = truth_frame(lab.spec, (technique,), ports=plan, hosts=HOSTS)
    cells = [
        Cell(h, Proto(p), int(n), technique.value, PortState(s), r)
        for h, p, n, s, r in zip(
            truth["host"].astype(str), truth["proto"].astype(str), truth["port"],
            truth["state"].astype(str), truth["reason"].astype(str), strict=True,
        )
    ]  # fmt: skip
    expected = {
        (f.cell.host, f.cell.proto.value, f.cell.port, f.kind.value)
        for f in audit(cells, load_policy(policy_path)).findings
    }
    assert found == expected
    assert proc.returncode == (1 if expected else 0)
