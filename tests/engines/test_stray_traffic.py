"""Stray traffic changes nothing (sans-IO, at the session): replies from unrelated hosts,
duplicated replies, late replies after a timeout, and replies for ports or tries never sent.
(The wire layer drops RSTs and ICMP errors with the wrong cookie or quoting a probe we never
sent before they reach the session: tests/protocol/test_wire.py.)"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core import rules
from twinscan.core.rules import IcmpReply, TcpReply, UdpReply
from twinscan.core.timing import resolve
from twinscan.core.vocab import Technique
from twinscan.protocol.raw_session import ScanSession

HOSTS = ["198.18.0.10", "198.18.0.11"]
PORTS = [22, 23, 24, 25]
TRUE_TCP = {22: TcpReply(rules.SYN | rules.ACK, 65160), 23: TcpReply(rules.RST | rules.ACK)}
REPLIES = st.sampled_from(
    [TcpReply(rules.SYN | rules.ACK), TcpReply(rules.RST | rules.ACK), IcmpReply(3, 13),
     IcmpReply(3, 3), UdpReply(), TcpReply(rules.FIN)]
)  # fmt: skip
STRAY = st.tuples(
    st.sampled_from([*HOSTS, "198.18.0.99", "10.0.0.1"]),
    st.integers(0, 70000),
    st.integers(-1, 9),
    REPLIES,
)


def run(technique: Technique, truth: dict[int, object], strays: list, when: str) -> dict:  # type: ignore[type-arg]
    """Drive a session on a fake clock; ``strays`` arrive before sending ('early'), right after
    every real reply ('dup'), or after everything timed out ('late')."""
    s = ScanSession(technique, HOSTS, PORTS, resolve(4), randomize=False)
    now = 0.0
    if when == "early":
        for h, p, t, r in strays:
            s.receive(h, p, t, r, now)
    for _ in range(10_000):
        for host, port, tryno in s.due(now):
            reply = truth.get(port)
            if reply is not None:
                s.receive(host, port, tryno, reply, now + 0.001)  # type: ignore[arg-type]
                if when == "dup":
                    s.receive(host, port, tryno, reply, now + 0.002)  # type: ignore[arg-type]
                    for h, p, t, r in strays:
                        if h not in HOSTS or p not in PORTS:
                            s.receive(h, p, t, r, now + 0.002)
        s.expire(now)
        if s.done:
            break
        wake = s.wakeup(now)
        now = max(now + 0.001, wake if wake is not None else now + 0.01)
    assert s.done
    if when == "late":
        for h, p, t, r in strays:
            s.receive(h, p, t, r, now + 5)
    return {(v.host, v.port): (v.state, v.reason) for v in s.verdicts()}


@settings(max_examples=150, deadline=None)
@given(strays=st.lists(STRAY, max_size=20), when=st.sampled_from(["early", "dup", "late"]))
def test_stray_replies_leave_the_verdicts_alone(strays: list, when: str) -> None:  # type: ignore[type-arg]
    clean = run(Technique.SYN, TRUE_TCP, [], "none")
    assert run(Technique.SYN, TRUE_TCP, strays, when) == clean


def test_late_reply_after_the_verdict_changes_nothing() -> None:
    clean = run(Technique.UDP, {22: IcmpReply(3, 3)}, [], "none")
    late = [(HOSTS[0], 24, -1, UdpReply()), (HOSTS[1], 25, 0, IcmpReply(3, 3))]
    assert run(Technique.UDP, {22: IcmpReply(3, 3)}, late, "late") == clean


# -- the lab: forged packets on the wire while a real scan runs

INJECTOR = Path(__file__).with_name("stray_injector.py")


@pytest.mark.lab
@pytest.mark.parametrize(
    ("technique", "ports"), [(Technique.SYN, "1-100,443"), (Technique.UDP, "7,9,19,53,123,161")]
)
def test_forged_replies_in_the_lab_change_no_verdict(lab, technique: Technique, ports: str) -> None:  # type: ignore[no-untyped-def]
    """A lab host forges, for every probe it gets, replies with wrong cookies, from an unrelated
    address, ICMP errors quoting wrong or never-sent probes, and duplicates and late copies of
    its kernel's real replies: the scan's verdicts equal the truth, cell by cell."""
    from twinscan.formats.csv import read_csv
    from twinscan.lab import netns
    from twinscan.lab.verify import compare

    target = lab.address("plain")
    other = lab.address("acl")
    ns = netns.Names(lab.prefix).host_ns("plain")
    injector = subprocess.Popen(
        ["ip", "netns", "exec", ns, sys.executable, str(INJECTOR), lab.spec.scanner, other, "12"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(2.0)  # the sniffer is up
        argv = [sys.executable, "-m", "twinscan", "scan", f"-s{technique.letter}", "-T4",
                "--max-rate", "300", "-p", ports, target, "--csv", "-"]  # fmt: skip
        proc = lab.run(argv, timeout=120)
        out, err = injector.communicate(timeout=60)
    finally:
        if injector.poll() is None:
            injector.kill()
            injector.wait(timeout=10)
    assert proc.returncode == 0, proc.stderr
    assert injector.returncode == 0, err
    forged = int(out.strip().splitlines()[-1])
    print(f"forged {forged} packets")
    assert forged > 0  # it did forge packets
    frame = read_csv(io.StringIO(proc.stdout))
    truth = lab.truth[(lab.truth["host"].astype(str) == target)]
    truth = truth[truth["port"].isin(frame["port"].tolist())]
    truth = truth[truth["technique"].astype(str) == technique.value]
    assert len(truth) == len(frame) > 0
    mismatches = compare(lab.spec, truth, frame)
    assert not mismatches, [str(m) for m in mismatches]
