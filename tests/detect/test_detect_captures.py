"""Real captures (fixtures/captures, made by scripts/make_detect_captures.py): every scan is
found with its technique and tool; the ordinary client beside it is never flagged."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import REPO
from twinscan.cli import app
from twinscan.detect import detect_file

CAPTURES = REPO / "fixtures" / "captures"
#: scanner and ordinary client of each topology (see the script's docstring)
OWN = ("198.18.99.2", "198.18.99.3")
LAB = ("198.18.0.1", "198.18.0.11")
MASSCAN = ("198.18.99.4", "198.18.99.3")

CASES = [
    *[(f"nmap-{t}", t, "nmap" if t not in ("connect", "udp") else "", OWN)
      for t in ("syn", "connect", "fin", "xmas", "null", "ack", "maimon", "udp")],
    *[(f"twinscan-{t}", t, "twinscan" if t not in ("connect", "udp") else "", LAB)
      for t in ("syn", "connect", "fin", "xmas", "null", "ack", "maimon", "udp")],
    ("masscan-syn", "syn", "masscan", MASSCAN),
]  # fmt: skip


def _available(name: str) -> Path:
    path = CAPTURES / f"{name}.pcap"
    if not path.exists():
        pytest.skip(f"{path.name} not generated (scripts/make_detect_captures.py {name})")
    return path


@pytest.mark.parametrize(("name", "technique", "tool", "hosts"), CASES, ids=[c[0] for c in CASES])
def test_scan_is_detected_with_its_technique_and_tool(
    name: str, technique: str, tool: str, hosts: tuple[str, str]
) -> None:
    scanner, client = hosts
    rep = detect_file(_available(name))
    assert not rep.warnings
    mine = [r for r in rep.rows if r.scanner == scanner]
    assert mine, f"{name}: no alert"
    assert {r.technique for r in mine} == {technique}
    assert {r.tool for r in mine} == {tool}
    assert all(r.probes_before_alert >= 3 and r.alert_at >= r.first_seen for r in mine)
    assert [r for r in rep.rows if r.scanner == client] == []
    # every sfPortscan level sees a scan of >= 21 ports of one host
    assert {"sfportscan-low", "sfportscan-medium", "sfportscan-high"} <= {r.detector for r in mine}


@pytest.mark.parametrize(
    ("name", "detectors"),
    [
        ("nmap-syn", {"zeek-scan", "scanlogd"}),
        ("nmap-fin", {"scanlogd"}),
        ("nmap-connect", {"zeek-scan", "scanlogd"}),
    ],
)
def test_which_other_detectors_see_it(name: str, detectors: set[str]) -> None:
    rows = detect_file(_available(name)).rows
    others = {r.detector for r in rows} - {"sfportscan-low", "sfportscan-medium", "sfportscan-high"}
    assert others == detectors  # TRW: one host is one observation; zeek: SYNs only


@pytest.mark.parametrize("name", ["nmap-ack", "nmap-maimon"])
def test_ack_and_maimon_evade_scanlogd_and_zeek(name: str) -> None:
    detectors = {r.detector for r in detect_file(_available(name)).rows}
    assert not detectors & {"scanlogd", "zeek-scan", "trw"}


def test_ordinary_traffic_alone_raises_nothing() -> None:
    rep = detect_file(_available("ordinary"))
    assert rep.contacts >= 20  # pages, DNS and SNMP queries, a refused connection retried
    assert rep.rows == ()


# --- the command line ------------------------------------------------------------------------


runner = CliRunner()


def test_cli_table_csv_and_json(tmp_path: Path) -> None:
    src = _available("nmap-syn")
    res = runner.invoke(
        app,
        [
            "detect",
            str(src),
            "--csv",
            str(tmp_path / "o.csv"),
            "--json",
            str(tmp_path / "o.json"),
            "-d",
            "scanlogd",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "scanlogd" in res.stdout and "syn" in res.stdout and "nmap" in res.stdout
    lines = (tmp_path / "o.csv").read_text().splitlines()
    assert lines[0].startswith("capture,detector,alert,scanner,targets,technique,tool,ports")
    assert len(lines) == 2
    row = json.loads((tmp_path / "o.json").read_text().splitlines()[0])
    assert row["detector"] == "scanlogd" and row["scanner"] == OWN[0] and row["tool"] == "nmap"


def test_cli_not_a_capture_exits_2_with_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "notes.txt"
    bad.write_text("hello\n")
    res = runner.invoke(app, ["detect", str(bad)])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "not a pcap or pcapng" in res.stderr


def test_cli_truncated_capture_warns_and_reports(tmp_path: Path) -> None:
    data = _available("nmap-syn").read_bytes()
    cut = tmp_path / "cut.pcap"
    cut.write_bytes(data[: len(data) // 2 + 7])
    res = runner.invoke(app, ["detect", str(cut)])
    assert res.exit_code == 0
    assert "warning" in res.stderr and "truncated" in res.stderr
    assert "sfportscan-low" in res.stdout


def test_cli_usage_errors(tmp_path: Path) -> None:
    assert runner.invoke(app, ["detect"]).exit_code == 2
    res = runner.invoke(app, ["detect", "x.pcap", "-d", "snort"])
    assert res.exit_code == 2 and "unknown detector" in res.stderr
    res = runner.invoke(app, ["detect", str(tmp_path / "missing.pcap")])
    assert res.exit_code == 2 and "missing.pcap" in res.stderr
