"""``twinscan bench detect``: the plan, re-timing, the table (pure) and a quick lab run (root).

The lab run (marker ``lab``) brings up the bench lab under its own prefix, runs the quick
matrix (nmap -T4 SYN random and sequential, twinscan SYN, a horizontal nmap sweep, one
re-timed -T1 row), and checks the CSV's shape, that the fast vertical nmap SYN scan is seen by
sfportscan-low, and that the real scanlogd (Debian package) and twinscan's scanlogd model
agree on every real capture. Timings are printed, never asserted.
"""

from __future__ import annotations

import csv
import ipaddress
import shutil
import struct
from pathlib import Path

import pytest

from twinscan.bench import detect_matrix as dm
from twinscan.bench.pcap_retime import retime, scanner_probes
from twinscan.detect.capture import pcap_header, pcap_record, read_capture

SCANNER, TARGET = "198.18.4.1", "198.18.4.11"


def _frame(src: str, dst: str, sport: int, dport: int, flags: int) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 1024, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 1, 0, 64, 6, 0,
                     ipaddress.IPv4Address(src).packed, ipaddress.IPv4Address(dst).packed)  # fmt: skip
    return b"\x00" * 12 + b"\x08\x00" + ip + tcp


def _scan_capture(n: int, gap: float = 0.001, rtt: float = 0.0002) -> bytes:
    """``n`` SYN probes ``gap`` apart, each answered by RST+ACK ``rtt`` later."""
    recs = []
    for k in range(n):
        t = 1000.0 + k * gap
        recs.append(pcap_record(t, _frame(SCANNER, TARGET, 40000, 1 + k, 0x02)))
        recs.append(pcap_record(t + rtt, _frame(TARGET, SCANNER, 1 + k, 40000, 0x14)))
    return pcap_header() + b"".join(recs)


def test_plan_names_are_unique_and_retimed_rows_have_real_sources() -> None:
    for quick in (False, True):
        scans = dm.plan(TARGET, ["198.18.4.11", "198.18.4.12"], quick=quick)
        names = [s.name for s in scans]
        assert len(names) == len(set(names))
        real = {s.name for s in scans if not s.retimed}
        for s in scans:
            if s.retimed:
                assert s.retime_from in real and s.delay_s > 0 and "re-timed" in s.name
            else:
                assert s.argv
    full = dm.plan(TARGET, [TARGET], quick=False)
    techniques = {s.technique for s in full if s.tool == "nmap" and not s.retimed}
    assert techniques == set(dm.LETTER)
    assert {s.pace for s in full if s.tool == "nmap"} >= {f"-T{t}" for t in range(6)}
    assert {s.order for s in full} == {"random", "sequential"}
    assert {s.shape for s in full} == {"vertical", "horizontal"}
    assert len(dm.plan(TARGET, [TARGET], quick=True)) <= 6


def test_retime_moves_probes_to_the_schedule_and_keeps_replies_with_them() -> None:
    data = _scan_capture(10)
    out = retime(data, int(ipaddress.IPv4Address(SCANNER)), 15.0)
    fr = read_capture(out)
    ts = fr.ts.tolist()
    assert len(ts) == 20
    probes, replies = ts[0::2], ts[1::2]
    assert probes == pytest.approx([1000.0 + 15.0 * k for k in range(10)])
    assert [r - p for p, r in zip(probes, replies, strict=True)] == pytest.approx([0.0002] * 10)
    n, first, last = scanner_probes(out, int(ipaddress.IPv4Address(SCANNER)))
    assert (n, first, last) == (10, pytest.approx(1000.0), pytest.approx(1135.0))


def test_retimed_slow_scan_evades_scanlogd_but_not_sfportscan_low() -> None:
    data = _scan_capture(60)
    scan = dm.Scan("x", "nmap", "syn", "-T4", "random", "vertical", ("nmap",))
    fast = {r["detector"]: r for r in dm.detect_rows(scan, data, SCANNER, "real")}
    assert fast["scanlogd"]["detected"] == "yes" and fast["sfportscan-low"]["detected"] == "yes"
    slow_data = retime(data, int(ipaddress.IPv4Address(SCANNER)), 15.0)
    slow = {r["detector"]: r for r in dm.detect_rows(scan, slow_data, SCANNER, "re-timed")}
    assert slow["scanlogd"]["detected"] == "no"  # 15 s between ports: over its 3 s gap
    assert slow["sfportscan-low"]["detected"] == "yes"  # 5 refusals within its 60 s window
    assert slow["sfportscan-low"]["probes"] == 5


def test_compare_scanlogd_skips_retimed_rows() -> None:
    rows = [
        {"scan": "a", "detector": "scanlogd", "detected": "yes"},
        {"scan": "a", "detector": dm.REAL_SCANLOGD, "detected": "yes"},
        {"scan": "b", "detector": "scanlogd", "detected": "yes"},
        {"scan": "b", "detector": dm.REAL_SCANLOGD, "detected": "no"},
        {"scan": "c", "detector": "scanlogd", "detected": "no"},
        {"scan": "c", "detector": dm.REAL_SCANLOGD, "detected": "n/a"},
    ]
    assert dm.compare_scanlogd(rows) == (1, ["b"])


# --- the quick matrix in a lab of its own (root) -------------------------------------------------


@pytest.fixture(scope="module")
def quick_matrix(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, str]]:
    from conftest import lab_unavailable

    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    for tool in ("nmap", "tcpdump", "unshare"):
        if shutil.which(tool) is None:
            pytest.skip(f"bench detect needs {tool}")
    out = tmp_path_factory.mktemp("detect-matrix")
    csv_path, md_path = dm.run_matrix(out, quick=True, log=print)
    assert md_path.read_text().count("\n| `") == 5
    with csv_path.open() as fh:
        return list(csv.DictReader(fh))


@pytest.mark.lab
def test_quick_matrix_csv_shape_and_fast_nmap_syn_is_seen(
    quick_matrix: list[dict[str, str]],
) -> None:
    rows = quick_matrix
    assert rows and list(rows[0]) == list(dm.CSV_COLUMNS)
    scans = {r["scan"] for r in rows}
    assert len(scans) == 5
    for scan in scans:
        assert sorted(r["detector"] for r in rows if r["scan"] == scan) == sorted(dm.DETECTORS)
    assert {r["detected"] for r in rows} <= {"yes", "no", "n/a"}
    hit = next(
        r
        for r in rows
        if r["scan"] == "nmap -sS -T4 vertical" and r["detector"] == "sfportscan-low"
    )
    assert hit["detected"] == "yes" and hit["capture"] == "real"
    assert 5 <= int(hit["probes"]) <= int(hit["scan_probes"])
    retimed = [r for r in rows if r["capture"].startswith("re-timed")]
    assert retimed and all(
        r["detected"] == "n/a" for r in retimed if r["detector"] == dm.REAL_SCANLOGD
    )


@pytest.mark.lab
def test_real_scanlogd_agrees_with_the_model_on_the_same_traffic(
    quick_matrix: list[dict[str, str]],
) -> None:
    if shutil.which("scanlogd") is None:
        pytest.skip("Debian package scanlogd is not installed (make setup)")
    real = {r["scan"]: r for r in quick_matrix if r["detector"] == dm.REAL_SCANLOGD}
    model = {r["scan"]: r for r in quick_matrix if r["detector"] == "scanlogd"}
    compared = {s: r for s, r in real.items() if r["detected"] != "n/a"}
    assert len(compared) == 4
    for scan, r in compared.items():
        assert r["detected"] == model[scan]["detected"], (scan, r["note"])
    # the fast vertical scans: both alert; the real one says so in syslog's words
    assert real["nmap -sS -T4 vertical"]["detected"] == "yes"
    note = real["nmap -sS -T4 vertical"]["note"]  # "198.18.4.1[:sport] to 198.18.4.11 ports ..."
    assert f": {SCANNER}" in note and f" to {TARGET} ports " in note
    # a one-port sweep never reaches scanlogd's 7 ports: neither alerts
    assert real["nmap -sS -T4 horizontal"]["detected"] == "no"


def test_bench_detect_rejects_unknown_benchmark(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from twinscan.cli import app

    result = CliRunner().invoke(app, ["bench", "nosuch", "--out", str(tmp_path)])
    assert result.exit_code != 0
    assert "detect" in result.output
