"""Connect and bounce scans on the default lab: every cell must agree with the truth table.

The scanner runs inside the lab's scanner namespace (``lab.run``), so packets only ever reach
the lab's 198.18.0.0/24. The lossy host (10% inbound loss) can in principle lose every try of a
probe; the retry budget measured from its loss ratio (``pacing.retry_budget``) makes that
rarer than 1 in 10,000 scans (with nmap's rule alone, a CI run saw port 24 filtered), and nothing
else may disagree.
"""

from __future__ import annotations

import io
import sys

import pytest

from twinscan.core.vocab import Technique
from twinscan.formats.csv import read_csv
from twinscan.lab.verify import compare
from twinscan.request.ports import format_port_list

pytestmark = pytest.mark.lab

TWINSCAN = [sys.executable, "-m", "twinscan"]


def _scan(lab, argv: list[str]):  # type: ignore[no-untyped-def]
    proc = lab.run([*TWINSCAN, "scan", *argv, "--csv", "-"], timeout=240)
    assert proc.returncode == 0, proc.stderr
    return read_csv(io.StringIO(proc.stdout))


def test_connect_scan_agrees_with_truth(lab) -> None:  # type: ignore[no-untyped-def]
    ports = format_port_list(lab.spec.tcp_universe())
    targets = [h.address for h in lab.spec.hosts]
    frame = _scan(lab, ["-sT", "-T4", "-p", ports, *targets])
    assert set(frame["technique"].astype(str)) == {Technique.CONNECT.value}
    mismatches = compare(lab.spec, lab.truth, frame)
    assert not mismatches, "\n".join(map(str, mismatches))
    truth = lab.truth[lab.truth["technique"].astype(str) == Technique.CONNECT.value]
    assert len(frame) == len(truth)
    # the lab exercises every connect verdict the rules table can give here
    seen = set(zip(frame["state"].astype(str), frame["reason"].astype(str), strict=True))
    assert {
        ("open", "syn-ack"),
        ("closed", "conn-refused"),
        ("filtered", "no-response"),
        ("filtered", "host-unreach"),
        ("filtered", "net-unreach"),
    } <= seen


def test_bounce_scan_agrees_with_truth(lab) -> None:  # type: ignore[no-untyped-def]
    spec = lab.spec
    relay = spec.host(spec.scan.bounce_relay)
    targets = [spec.host(n).address for n in spec.scan.bounce_targets]
    ports = format_port_list(spec.scan.bounce_ports)
    frame = _scan(lab, ["-b", f"anonymous:lab@{relay.address}:{relay.ftp}", "-p", ports, *targets])
    assert set(frame["technique"].astype(str)) == {Technique.FTP_BOUNCE.value}
    mismatches = compare(spec, lab.truth, frame)
    assert not mismatches, "\n".join(map(str, mismatches))
    assert len(frame) == len(targets) * len(spec.scan.bounce_ports)
    assert {"open", "closed"} <= set(frame["state"].astype(str))


def test_owners_stay_empty_for_remote_lab_hosts(lab) -> None:  # type: ignore[no-untyped-def]
    plain = lab.address("plain")
    frame = _scan(lab, ["-sT", "-p", "22,80", "--owners", plain])
    assert (frame["state"].astype(str) == "open").all()
    assert frame["pid"].isna().all()  # the lab host's processes are not "local" to the scanner
