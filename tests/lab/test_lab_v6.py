"""The dual-stack default lab over IPv6 (issue #17): every raw technique agrees 100% with the
truth on every lab host's IPv6 address, nmap -6 agrees where it is right, and the guard refuses
the lab's IPv6 addresses from outside the lab."""

from __future__ import annotations

import io
import shutil
import sys

import pytest

from twinscan.core.vocab import Technique
from twinscan.formats.csv import read_csv
from twinscan.lab.truth import truth_frame
from twinscan.lab.verify import compare
from twinscan.request.ports import PortPlan, format_port_list

pytestmark = pytest.mark.lab

TWINSCAN = [sys.executable, "-m", "twinscan"]
RAW = [
    Technique.SYN,
    Technique.FIN,
    Technique.XMAS,
    Technique.NULL,
    Technique.ACK,
    Technique.WINDOW,
    Technique.MAIMON,
    Technique.UDP,
]


def _v6(lab) -> list[str]:  # type: ignore[no-untyped-def]
    return [str(h.address6) for h in lab.spec.hosts]


def test_default_lab_is_dual_stack(lab) -> None:  # type: ignore[no-untyped-def]
    spec = lab.spec
    assert str(spec.subnet6) == "2001:db8:18::/64" and spec.scanner6 == "2001:db8:18::1"
    assert spec.host("plain").address6 == "2001:db8:18::a"


@pytest.mark.parametrize("technique", RAW, ids=lambda t: t.value)
def test_raw_technique_over_ipv6_agrees_with_truth(lab, technique: Technique) -> None:  # type: ignore[no-untyped-def]
    spec = lab.spec
    udp = technique is Technique.UDP
    ports = spec.udp_universe() if udp else spec.tcp_universe()
    targets = _v6(lab)
    argv = [*TWINSCAN, "scan", "-6", f"-s{technique.letter}", "-T4", "-p", format_port_list(ports)]
    proc = lab.run([*argv, *targets, "--csv", "-"], timeout=120)
    assert proc.returncode == 0, proc.stderr
    frame = read_csv(io.StringIO(proc.stdout))
    plan = PortPlan(tcp=() if udp else ports, udp=ports if udp else ())
    truth = truth_frame(spec, (technique,), ports=plan, hosts=targets)
    assert len(frame) == len(truth) == len(targets) * len(ports)
    mismatches = compare(spec, truth, frame)
    assert not mismatches, "\n".join(map(str, mismatches))
    if not udp:
        return
    # ICMPv6 port-unreachable from the target itself: closed; admin-prohibited and no-route
    # (the lab's host-/admin-prohibited and net-unreachable rejections): filtered.
    acl = frame[frame["host"].astype(str) == lab.spec.host("acl").address6]
    reasons = dict(zip(acl["port"].astype(int), acl["reason"].astype(str), strict=True))
    assert reasons[69] == "port-unreach" and reasons[161] == "admin-prohibited"
    assert reasons[137] == "admin-prohibited" and reasons[19] == "no-route"


@pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap not installed")
def test_compare_6_with_nmap_and_truth(lab) -> None:  # type: ignore[no-untyped-def]
    spec = lab.spec
    targets = [str(spec.host(n).address6) for n in ("plain", "acl")]
    argv = [
        *TWINSCAN,
        "compare",
        "-6",
        "-sSU",
        "--truth",
        "-T4",
        "-p",
        "T:1-120,8080,U:19,53,69,137,161",
    ]
    proc = lab.run([*argv, *targets], timeout=180)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "every verdict agrees" in proc.stdout
    assert "100.0%" in proc.stdout


def test_host_namespace_refuses_the_lab_ipv6_addresses(lab) -> None:  # type: ignore[no-untyped-def]
    """Outside the lab the documentation prefix is an ordinary routed range: refused."""
    import subprocess

    addr = str(lab.spec.host("plain").address6)
    proc = subprocess.run(
        [*TWINSCAN, "scan", "-6", "-sS", "-p", "22", addr],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0 and f"refusing to scan {addr}" in proc.stderr
