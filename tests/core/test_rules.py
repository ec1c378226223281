"""nmap's verdict rules, driven from fixtures/verdict_rules.csv, plus the override table."""

from __future__ import annotations

import csv
import errno

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO
from twinscan.core import rules
from twinscan.core.rules import (
    BounceOutcome,
    ConnectOutcome,
    IcmpReply,
    TcpReply,
    UdpReply,
    Verdict,
    classify,
    classify_all,
    merge,
)
from twinscan.core.vocab import PortState, Reason, Technique

RULES_CSV = REPO / "fixtures" / "verdict_rules.csv"
FLAG_BITS = {
    "F": rules.FIN,
    "S": rules.SYN,
    "R": rules.RST,
    "P": rules.PSH,
    "A": rules.ACK,
    "U": rules.URG,
}


def _params(text: str) -> dict[str, str]:
    return dict(item.split("=", 1) for item in text.split(";") if item)


def _reply(kind: str, params: dict[str, str]) -> rules.Reply | None:
    if kind == "none":
        return None
    if kind == "tcp":
        flags = sum(FLAG_BITS[c] for c in params["flags"])
        return TcpReply(flags=flags, window=int(params["window"]))
    if kind in ("icmp", "icmp6"):
        return IcmpReply(
            type=int(params["type"]),
            code=int(params["code"]),
            from_target=params["from_target"] == "1",
            v6=kind == "icmp6",
        )
    if kind == "udp":
        return UdpReply()
    if kind == "connect":
        name = params["errno"]
        return ConnectOutcome(0 if name == "0" else getattr(errno, name))
    if kind == "bounce":
        codes = tuple(int(c) for c in params["codes"].split(",") if c)
        return BounceOutcome(codes=codes, timed_out=params["timed_out"] == "1")
    raise AssertionError(f"unknown reply kind {kind}")


def _cells() -> list[dict[str, str]]:
    with RULES_CSV.open() as f:
        lines = [line for line in f if not line.startswith("#")]
    return list(csv.DictReader(lines))


CELLS = _cells()


@pytest.mark.parametrize(
    "cell", CELLS, ids=[f"{c['technique']}-{c['reply']}-{c['params']}" for c in CELLS]
)
def test_rule_cell(cell: dict[str, str]) -> None:
    technique = Technique(cell["technique"])
    params = _params(cell["params"])
    reply = _reply(cell["reply"], params)
    defeat = params.get("defeat_icmp_ratelimit") == "1"
    if cell["state"] == "error":
        with pytest.raises(rules.UnexpectedConnectError):
            classify(technique, reply, defeat_icmp_ratelimit=defeat)
        return
    verdict = classify(technique, reply, defeat_icmp_ratelimit=defeat)
    assert verdict == Verdict(PortState(cell["state"]), Reason(cell["reason"]))


def test_table_covers_every_technique_and_reply_kind() -> None:
    seen = {(c["technique"], c["reply"]) for c in CELLS}
    for technique in Technique:
        for kind in ("none", "tcp", "udp"):
            assert (technique.value, kind) in seen, (technique, kind)
    raw = [t for t in Technique if t.raw]
    for technique in raw:
        codes = {
            int(_params(c["params"])["code"])
            for c in CELLS
            if c["technique"] == technique.value
            and c["reply"] == "icmp"
            and _params(c["params"])["type"] == "3"
        }
        assert codes == set(range(16)), technique
    for technique in raw:
        # ICMPv6 (issue #17): every unreachable code 0-7, packet too big, time exceeded and
        # parameter problem has a cell for every raw technique.
        v6 = {
            (int(p["type"]), int(p["code"]))
            for c in CELLS
            if c["technique"] == technique.value and c["reply"] == "icmp6"
            for p in [_params(c["params"])]
        }
        assert {(1, code) for code in range(8)} | {(2, 0), (3, 0), (4, 0), (4, 1)} <= v6, technique
    errnos = {c["params"] for c in CELLS if c["reply"] == "connect"}
    assert len(errnos) >= len(rules.CONNECT_ERRNO)


# --- override rules (scan_engine.cc ultrascan_port_pspec_update) ---------------------------

OPEN, C, F, U, OF = (
    PortState.OPEN,
    PortState.CLOSED,
    PortState.FILTERED,
    PortState.UNFILTERED,
    PortState.OPEN_FILTERED,
)
MERGE_CASES = [
    # technique, old, new, expected
    (Technique.SYN, OPEN, C, OPEN),  # open is sticky unless silence means open
    (Technique.SYN, OPEN, F, OPEN),
    (Technique.UDP, OPEN, C, C),
    (Technique.FIN, OPEN, C, C),
    (Technique.SYN, C, F, C),  # closed never becomes filtered
    (Technique.SYN, C, OPEN, OPEN),
    (Technique.UDP, C, OPEN, C),  # closed never changes when silence means open
    (Technique.FIN, C, F, C),
    (Technique.SYN, F, OPEN, OPEN),
    (Technique.SYN, F, C, C),
    (Technique.UDP, F, OPEN, F),  # filtered cannot become open when silence means open
    (Technique.UDP, F, C, C),
    (Technique.ACK, U, F, U),  # RST then ICMP stays unfiltered
    (Technique.ACK, U, OPEN, OPEN),
    (Technique.ACK, U, C, C),
    (Technique.UDP, OF, OPEN, OPEN),
    (Technique.FIN, OF, C, C),
    (Technique.FIN, OF, F, F),
]


@pytest.mark.parametrize(("technique", "old", "new", "expected"), MERGE_CASES)
def test_merge(technique: Technique, old: PortState, new: PortState, expected: PortState) -> None:
    result = merge(technique, Verdict(old, Reason.RESET), Verdict(new, Reason.SYN_ACK))
    assert result.state is expected


def test_classify_all_folds_in_arrival_order() -> None:
    rst = TcpReply(flags=rules.RST | rules.ACK)
    admin = IcmpReply(3, 13)
    # ACK scan: RST first, then an ICMP error -> stays unfiltered
    assert classify_all(Technique.ACK, [rst, admin]).state is PortState.UNFILTERED
    # ICMP first, then RST -> unfiltered wins (filtered accepts any new state)
    assert classify_all(Technique.ACK, [admin, rst]).state is PortState.UNFILTERED
    # UDP: a reply after port-unreach doesn't reopen a closed port
    assert classify_all(Technique.UDP, [IcmpReply(3, 3), UdpReply()]).state is PortState.CLOSED
    # ignored replies alone leave the no-response verdict
    assert classify_all(Technique.SYN, [TcpReply(flags=rules.ACK)]) == Verdict(
        PortState.FILTERED, Reason.NO_RESPONSE
    )


# --- properties ----------------------------------------------------------------------------

replies = st.one_of(
    st.none(),
    st.builds(TcpReply, flags=st.integers(0, 255), window=st.integers(0, 65535)),
    st.builds(
        IcmpReply,
        type=st.integers(0, 255),
        code=st.integers(0, 255),
        from_target=st.booleans(),
        v6=st.booleans(),
    ),
    st.just(UdpReply()),
    st.builds(ConnectOutcome, errno=st.sampled_from(sorted(rules.CONNECT_ERRNO))),
    st.builds(
        BounceOutcome,
        codes=st.lists(st.integers(100, 599), max_size=3).map(tuple),
        timed_out=st.booleans(),
    ),
)


@given(technique=st.sampled_from(list(Technique)), reply=replies, defeat=st.booleans())
def test_classify_is_total_and_legal(
    technique: Technique, reply: rules.Reply | None, defeat: bool
) -> None:
    verdict = classify(technique, reply, defeat_icmp_ratelimit=defeat)
    assert verdict.state in rules.LEGAL_STATES[technique]
    assert isinstance(verdict.reason, Reason)


@given(
    technique=st.sampled_from(list(Technique)),
    seq=st.lists(replies.filter(lambda r: r is not None), max_size=6),
)
def test_classify_all_is_total_and_legal(technique: Technique, seq: list[rules.Reply]) -> None:
    verdict = classify_all(technique, seq)
    assert verdict.state in rules.LEGAL_STATES[technique]


@given(technique=st.sampled_from(list(Technique)), reply=replies)
def test_a_second_identical_reply_changes_nothing(
    technique: Technique, reply: rules.Reply | None
) -> None:
    if reply is None:
        return
    once = classify_all(technique, [reply])
    assert classify_all(technique, [reply, reply]) == once
