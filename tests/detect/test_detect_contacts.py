"""Packets to contacts: conversations, outcomes, retransmissions, mid-stream joins, ICMP."""

from __future__ import annotations

import shutil
import subprocess
import sys
import time

import pytest
from detect_frames import MSS_1460, icmp_unreach, pcap, tcp, udp

from twinscan.core.vocab import Technique as T
from twinscan.detect.capture import read_capture
from twinscan.detect.contacts import TECHNIQUES, Contacts, Outcome, contacts
from twinscan.detect.fields import extract

S, D = "198.18.0.1", "198.18.0.10"


def of(packets: list[bytes]) -> Contacts:
    return contacts(
        extract(read_capture(pcap([(1.0 + i * 0.001, p) for i, p in enumerate(packets)])))
    )


def one(packets: list[bytes]) -> dict[str, object]:
    c = of(packets)
    assert len(c) == 1
    return {
        "technique": TECHNIQUES[int(c.technique[0])],
        "outcome": Outcome(int(c.outcome[0])),
        "completed": bool(c.completed[0]),
        "orig_rst": bool(c.orig_rst[0]),
        "data": bool(c.data[0]),
        "tries": int(c.tries[0]),
    }


SYN = tcp(S, D, 4000, 80, 0x02, seq=10, options=MSS_1460)
SYNACK = tcp(D, S, 80, 4000, 0x12, seq=50, ack=11)
RSTACK = tcp(D, S, 80, 4000, 0x14, ack=11)

CASES = [
    ("closed port", [SYN, RSTACK], T.SYN, Outcome.RST, {}),
    ("filtered, retransmitted", [SYN, SYN], T.SYN, Outcome.SILENT, {"tries": 2}),
    (
        "syn scan of an open port",
        [SYN, SYNACK, tcp(S, D, 4000, 80, 0x04, seq=11)],
        T.SYN,
        Outcome.OPEN,
        {"orig_rst": True},
    ),
    (
        "a client with data",
        [
            SYN,
            SYNACK,
            tcp(S, D, 4000, 80, 0x10, seq=11, ack=51),
            tcp(S, D, 4000, 80, 0x18, seq=11, ack=51, payload=b"GET /"),
        ],
        T.CONNECT,
        Outcome.OPEN,
        {"completed": True, "data": True},
    ),
    ("fin", [tcp(S, D, 4000, 80, 0x01), RSTACK], T.FIN, Outcome.RST, {}),
    ("xmas", [tcp(S, D, 4000, 80, 0x29)], T.XMAS, Outcome.SILENT, {}),
    ("null", [tcp(S, D, 4000, 80, 0x00), RSTACK], T.NULL, Outcome.RST, {}),
    ("ack", [tcp(S, D, 4000, 80, 0x10), tcp(D, S, 80, 4000, 0x04)], T.ACK, Outcome.RST, {}),
    ("maimon", [tcp(S, D, 4000, 80, 0x11), RSTACK], T.MAIMON, Outcome.RST, {}),
    ("syn with ECN bits", [tcp(S, D, 4000, 80, 0xC2), RSTACK], T.SYN, Outcome.RST, {}),
    (
        "udp answered",
        [udp(S, D, 5000, 53, b"q"), udp(D, S, 53, 5000, b"a")],
        T.UDP,
        Outcome.OPEN,
        {"data": True},
    ),
    (
        "udp unreachable",
        [udp(S, D, 5000, 69), icmp_unreach(D, udp(S, D, 5000, 69))],
        T.UDP,
        Outcome.UNREACH,
        {},
    ),
    ("tcp filtered by icmp", [SYN, icmp_unreach(D, SYN, 13)], T.SYN, Outcome.UNREACH, {}),
]


@pytest.mark.parametrize(
    ("packets", "tech", "outcome", "extra"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_contact_table(
    packets: list[bytes], tech: T, outcome: Outcome, extra: dict[str, object]
) -> None:
    got = one(packets)
    want = {
        "technique": tech,
        "outcome": outcome,
        "completed": False,
        "orig_rst": False,
        "data": False,
        "tries": 1,
    }
    want.update(extra)
    assert got == want


def test_mid_stream_and_stray_packets_are_not_contacts() -> None:
    assert len(of([tcp(S, D, 4000, 80, 0x18, payload=b"x")])) == 0  # PSH+ACK with data
    assert len(of([tcp(S, D, 4000, 80, 0x10), tcp(D, S, 80, 4000, 0x18, payload=b"y")])) == 0
    assert len(of([SYNACK])) == 0  # the capture began after the SYN
    assert len(of([icmp_unreach(D, udp(S, D, 5000, 69))])) == 0  # an error for an unseen probe


def test_retries_of_a_refused_client_are_separate_contacts_to_one_port() -> None:
    pk = [tcp(S, D, 4000 + i, 9999, 0x02, win=64240) for i in range(3)]
    pk += [tcp(D, S, 9999, 4000 + i, 0x14) for i in range(3)]
    c = of(pk)
    assert len(c) == 3 and set(c.dport.tolist()) == {9999}
    assert set(c.outcome.tolist()) == {int(Outcome.RST)}


@pytest.mark.skipif(
    sys.platform != "linux" or shutil.which("nmap") is None or __import__("os").geteuid() != 0,
    reason="needs Linux, root and nmap",
)
def test_live_capture_on_loopback_finds_an_nmap_scan(tmp_path: object) -> None:
    """``detect --live lo``: nmap SYN-scans 127.0.0.1 (loopback only) while we listen."""
    twinscan = str(__import__("pathlib").Path(sys.executable).with_name("twinscan"))
    live = subprocess.Popen(
        [twinscan, "detect", "--live", "lo", "--seconds", "6", "-d", "sfportscan-low"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(2.0)
    subprocess.run(
        ["nmap", "-n", "-Pn", "-sS", "-p", "47000-47050", "127.0.0.1"],
        capture_output=True,
        timeout=60,
    )
    out, err = live.communicate(timeout=60)
    assert live.returncode == 0, err
    lines = [line for line in out.splitlines() if line.startswith("sfportscan-low")]
    assert any(
        "127.0.0.1" in line and " syn " in f" {line} " and "nmap" in line for line in lines
    ), out
