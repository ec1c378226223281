"""The native raw engine on the default lab: every technique agrees 100% with the truth table.

Each scan runs inside the lab's scanner namespace (``lab.run``), so probes only reach the lab's
198.18.0.0/24; it covers every lab host at once -- including the host with 10% inbound loss
(``fw``) and the one keeping Linux's ICMP rate limit (``rl``) -- over the spec's port universe.
A mismatch is a failure even where ``lab.verify`` knows nmap to err the same way: the native
engine retransmits and paces to the ICMP limit so that it does not.
"""

from __future__ import annotations

import io
import sys
import time

import pytest

from twinscan.core.vocab import PortState, Technique
from twinscan.formats.csv import read_csv
from twinscan.lab.verify import compare
from twinscan.request.ports import format_port_list

pytestmark = pytest.mark.lab

TWINSCAN = [sys.executable, "-m", "twinscan"]
RAW_TCP = [
    Technique.SYN,
    Technique.FIN,
    Technique.XMAS,
    Technique.NULL,
    Technique.ACK,
    Technique.WINDOW,
    Technique.MAIMON,
]

#: The states the default lab must make each technique produce (so agreement is not vacuous).
MUST_SEE: dict[Technique, set[str]] = {
    Technique.SYN: {"open", "closed", "filtered"},
    Technique.FIN: {"closed", "open|filtered", "filtered"},
    Technique.ACK: {"unfiltered", "filtered"},
    Technique.WINDOW: {"closed", "filtered"},
    Technique.UDP: {"open", "closed", "open|filtered", "filtered"},
}


def _scan(lab, technique: Technique) -> tuple[object, float]:  # type: ignore[no-untyped-def]
    spec = lab.spec
    udp = technique is Technique.UDP
    ports = format_port_list(spec.udp_universe() if udp else spec.tcp_universe())
    targets = [h.address for h in spec.hosts]
    argv = [*TWINSCAN, "scan", f"-s{technique.letter}", "-T4", "-p", ports, *targets, "--csv", "-"]
    t0 = time.monotonic()
    proc = lab.run(argv, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    return read_csv(io.StringIO(proc.stdout)), elapsed


@pytest.mark.parametrize("technique", [*RAW_TCP, Technique.UDP], ids=lambda t: t.value)
def test_raw_technique_agrees_with_truth(lab, technique: Technique) -> None:  # type: ignore[no-untyped-def]
    frame, _ = _scan(lab, technique)
    assert set(frame["technique"].astype(str)) == {technique.value}
    truth = lab.truth[lab.truth["technique"].astype(str) == technique.value]
    assert len(frame) == len(truth)
    mismatches = compare(lab.spec, lab.truth, frame)
    assert not mismatches, "\n".join(map(str, mismatches))
    assert MUST_SEE.get(technique, set()) <= set(frame["state"].astype(str))


def test_rate_limited_host_udp_closed_ports_are_closed(lab) -> None:  # type: ignore[no-untyped-def]
    """The ``rl`` host answers with at most 6 port-unreachables, then one a second: the engine
    paces to that instead of calling the rest open|filtered, and costs about the limit's time."""
    rl = lab.address("rl")
    ports = format_port_list(lab.spec.udp_universe())
    argv = [*TWINSCAN, "scan", "-sU", "-T4", "-p", ports, rl, "--csv", "-"]
    t0 = time.monotonic()
    proc = lab.run(argv, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    frame = read_csv(io.StringIO(proc.stdout))
    truth = lab.truth[lab.truth["host"] == rl]
    mismatches = compare(lab.spec, truth, frame)
    assert not mismatches, "\n".join(map(str, mismatches))
    closed = int((frame["state"].astype(str) == PortState.CLOSED.value).sum())
    assert closed > 6  # more closed ports than the ICMP burst: pacing was needed
    # Linux lets 6 through at once, then one per second: the limit alone takes closed-6 seconds.
    assert elapsed >= closed - 6 - 0.5
    assert elapsed < 2 * (closed - 6) + 10  # generous bound: a 2-core box under load


# 2000 probes go one by one; 5000 take the bulk path (``raw.BULK_MIN_PROBES``), whose batches
# leave from two threads on a machine with two CPUs (``raw.SPLIT_MIN``)
@pytest.mark.parametrize("last", [2000, 5000])
def test_lossy_host_syn_costs_retries_not_a_crawl(lab, last: int) -> None:  # type: ignore[no-untyped-def]
    fw = lab.address("fw")
    argv = [*TWINSCAN, "scan", "-sS", "-T4", "-p", f"1-{last}", fw, "--csv", "-"]
    t0 = time.monotonic()
    proc = lab.run(argv, timeout=120)
    elapsed = time.monotonic() - t0
    assert proc.returncode == 0, proc.stderr
    frame = read_csv(io.StringIO(proc.stdout))
    states = frame.set_index("port")["state"].astype(str)
    assert states[22] == states[80] == "open"
    assert (states.drop([22, 80]) == "closed").all()  # no port lost to the 10% loss
    assert len(states) == last
    assert elapsed < 30
