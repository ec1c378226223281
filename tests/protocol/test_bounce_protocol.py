"""The FTP bounce dialogue as a pure state machine: replies in, commands and outcomes out."""

from __future__ import annotations

from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinscan.core import rules
from twinscan.core.vocab import PortState, Reason, Technique
from twinscan.protocol.ftp_bounce import (
    ABOR_TIMEOUT_S,
    LIST_FINAL_TIMEOUT_S,
    LIST_TIMEOUT_S,
    PORT_TIMEOUT_S,
    BounceSession,
    Phase,
    ProtocolError,
    RelayRefused,
    Reply,
    ReplyReader,
    SharedQueue,
    port_command,
)

SCANNER = "127.0.0.1"
TARGET = "198.18.0.10"


def session(*ports: int, calibrate: bool = True) -> BounceSession:
    queue = SharedQueue(deque((TARGET, p) for p in ports))
    return BounceSession(
        queue,
        user="anonymous",
        password="-wwwuser@",
        calibration=(SCANNER, 40000) if calibrate else None,
    )


def say(s: BounceSession, code: int, now: float = 0.0) -> list[str]:
    return s.on_reply(Reply(code, "text"), now)


def login(
    s: BounceSession, calibration_reply: int | None = 425, *, connected: bool = False
) -> list[str]:
    s.start(0.0)
    assert say(s, 220) == ["USER anonymous"]
    assert say(s, 331) == ["PASS -wwwuser@"]
    out = say(s, 230)
    if calibration_reply is None:
        return out
    assert out == ["PORT 127,0,0,1,156,64"]  # active mode to the scanner's own listener
    s.calibration_accepted = connected
    return say(s, calibration_reply)


def verdict(outcome: rules.BounceOutcome) -> tuple[PortState, Reason]:
    v = rules.classify(Technique.FTP_BOUNCE, outcome)
    return v.state, v.reason


# --- reply reader -------------------------------------------------------------------------


def test_reader_single_and_multiline_replies() -> None:
    r = ReplyReader()
    got = r.feed(b"220-Welcome\r\n220-to the relay\r\n220 ready\r\n331 Password\r\n")
    assert got == [Reply(220, "Welcome\nto the relay\nready"), Reply(331, "Password")]


@pytest.mark.parametrize("bad", [b"hello\r\n", b"22x ok\r\n", b"2200ok\r\n"])
def test_reader_rejects_non_ftp(bad: bytes) -> None:
    with pytest.raises(ProtocolError):
        ReplyReader().feed(bad)


def test_reader_bounds_line_length() -> None:
    with pytest.raises(ProtocolError):
        ReplyReader().feed(b"2" * 10_000)


replies = st.lists(
    st.tuples(st.integers(100, 599), st.text(st.characters(min_codepoint=32, max_codepoint=126))),
    min_size=1,
    max_size=8,
)


@given(replies, st.data())
def test_reader_is_indifferent_to_how_bytes_arrive(
    items: list[tuple[int, str]], data: st.DataObject
) -> None:
    wire = b"".join(f"{c} {t}\r\n".encode() for c, t in items)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=10)))
    reader, got, last = ReplyReader(), [], 0
    for cut in [*cuts, len(wire)]:
        got += reader.feed(wire[last:cut])
        last = cut
    assert got == [Reply(c, t) for c, t in items]


@given(st.ip_addresses(v=4), st.integers(0, 65535))
def test_port_command_round_trips(address: object, port: int) -> None:
    cmd = port_command(str(address), port)
    fields = [int(x) for x in cmd.removeprefix("PORT ").split(",")]
    assert ".".join(map(str, fields[:4])) == str(address)
    assert fields[4] * 256 + fields[5] == port


def test_port_command_refuses_ipv6() -> None:
    with pytest.raises(ValueError):
        port_command("::1", 80)


# --- login ----------------------------------------------------------------------------------


def test_user_accepted_without_password() -> None:
    s = session(80)
    s.start(0.0)
    say(s, 220)
    assert say(s, 230) == ["PORT 127,0,0,1,156,64"]
    assert s.logged_in


@pytest.mark.parametrize(("step", "code"), [("user", 530), ("pass", 530), ("greeting", 421)])
def test_refused_login_is_fatal(step: str, code: int) -> None:
    s = session(80)
    s.start(0.0)
    with pytest.raises(RelayRefused):
        if step == "greeting":
            say(s, code)
        say(s, 220)
        if step == "user":
            say(s, code)
        say(s, 331)
        say(s, code)


def test_login_timeout_is_fatal() -> None:
    s = session(80)
    s.start(0.0)
    assert s.deadline == 12.0
    with pytest.raises(RelayRefused):
        s.on_timeout(12.0)


# --- ports ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("reply", "connected"), [(425, False), (200, True)])
def test_eager_relay_port_reply_decides_without_list(reply: int, connected: bool) -> None:
    s = session(80, 81)
    assert login(s, reply, connected=connected) == [f"PORT {TARGET.replace('.', ',')},0,80"]
    assert s.eager is True
    assert say(s, 200) == [f"PORT {TARGET.replace('.', ',')},0,81"]
    assert say(s, 425) == ["QUIT"]
    assert [(job[1], verdict(o)) for job, o in s.results] == [
        (80, (PortState.OPEN, Reason.NO_RESPONSE)),
        (81, (PortState.CLOSED, Reason.NO_RESPONSE)),
    ]
    assert s.done


def test_classic_relay_follows_nmaps_list_rules() -> None:
    s = session(80, 81, 82, 83)
    login(s, 200)
    assert s.eager is False
    assert say(s, 200) == ["LIST"]  # PORT 80 accepted
    assert say(s, 150) == []
    assert say(s, 226)[0].startswith("PORT")  # 80: 150 then 226 -> open
    assert say(s, 200) == ["LIST"]  # 81
    assert say(s, 425)[0].startswith("PORT")  # 81: LIST 425 -> closed
    assert say(s, 200) == ["LIST"]  # 82
    say(s, 150, 1.0)
    assert s.phase is Phase.LIST_FINAL and s.deadline == 1.0 + LIST_FINAL_TIMEOUT_S
    assert s.on_timeout(11.0) == ["ABOR"]  # 82: 150 then silence -> ABOR, filtered
    assert s.deadline == 11.0 + ABOR_TIMEOUT_S
    assert say(s, 426) == []
    assert say(s, 226)[0].startswith("PORT")
    assert say(s, 200) == ["LIST"]  # 83
    assert say(s, 150) == []
    assert say(s, 426) == ["QUIT"]  # 83: transfer aborted -> nmap changes its mind: closed
    got = {job[1]: verdict(o) for job, o in s.results}
    assert got == {
        80: (PortState.OPEN, Reason.NO_RESPONSE),
        81: (PortState.CLOSED, Reason.NO_RESPONSE),
        82: (PortState.FILTERED, Reason.NO_RESPONSE),
        83: (PortState.CLOSED, Reason.NO_RESPONSE),
    }


def test_list_silence_is_filtered_and_the_connection_resyncs() -> None:
    s = session(80, 81)
    login(s, 200)
    say(s, 200, 2.0)
    assert s.deadline == 2.0 + LIST_TIMEOUT_S
    assert s.on_timeout(14.0) == ["QUIT"]
    assert s.resync and s.done
    assert verdict(s.results[0][1]) == (PortState.FILTERED, Reason.NO_RESPONSE)
    assert list(s.queue.jobs) == [(TARGET, 81)]  # left for another connection


def test_port_silence_is_filtered() -> None:
    s = session(80)
    login(s, 425)
    assert s.deadline == PORT_TIMEOUT_S
    s.on_timeout(PORT_TIMEOUT_S)
    assert verdict(s.results[0][1]) == (PortState.FILTERED, Reason.NO_RESPONSE)


def test_relay_hanging_up_during_list_is_closed_like_nmap() -> None:
    s = session(80)
    login(s, 200)
    say(s, 200)
    s.on_closed(1.0)
    assert verdict(s.results[0][1]) == (PortState.CLOSED, Reason.NO_RESPONSE)


def test_hang_up_while_waiting_for_port_reply_gives_the_port_back() -> None:
    s = session(80)
    login(s, 425)
    s.on_closed(1.0)
    assert s.results == [] and list(s.queue.jobs) == [(TARGET, 80)]


def test_privileged_ports_skipped_when_refused_and_unprivileged_refusal_is_fatal() -> None:
    s = session(22, 80, 8080)
    login(s, 425)
    assert say(s, 501) == [f"PORT {TARGET.replace('.', ',')},31,144"]  # 22 refused: skip to 8080
    assert s.queue.skipped == [(TARGET, 22), (TARGET, 80)]
    say(s, 200)
    assert [job[1] for job, _ in s.results] == [8080]
    s2 = session(8080)
    login(s2, 425)
    with pytest.raises(RelayRefused, match="unprivileged"):
        say(s2, 502)


def test_privileged_refusal_after_a_privileged_success_is_just_closed() -> None:
    s = session(21, 22)
    login(s, 425)
    say(s, 200)  # 21 accepted: privileged ports are fine
    say(s, 501)  # 22: nmap no longer treats 5xx specially; LIST decides
    assert s.phase is Phase.LIST


def test_misaligned_500_is_skipped() -> None:
    s = session(80)
    login(s, 200)
    say(s, 200)
    assert say(s, 500) == []
    say(s, 226)
    assert verdict(s.results[0][1]) == (PortState.OPEN, Reason.NO_RESPONSE)


@pytest.mark.parametrize("calibrate", [True, False])
def test_unknown_eagerness_is_learnt_from_the_first_4xx(calibrate: bool) -> None:
    s = session(80, 81, calibrate=calibrate)
    if calibrate:
        login(s, 501)
    else:
        assert login(s, None)[0].startswith(f"PORT {TARGET.replace('.', ',')}")
    assert s.eager is None
    assert say(s, 425)[0].startswith("PORT")
    assert s.eager is True
    say(s, 200)
    assert [verdict(o)[0] for _, o in s.results] == [PortState.CLOSED, PortState.OPEN]


# --- the rules the outcomes feed ------------------------------------------------------------


@pytest.mark.parametrize(
    ("outcome", "state"),
    [
        (rules.BounceOutcome((150, 226)), PortState.OPEN),
        (rules.BounceOutcome((226,)), PortState.OPEN),
        (rules.BounceOutcome((200,)), PortState.OPEN),
        (rules.BounceOutcome((425,)), PortState.CLOSED),
        (rules.BounceOutcome((421,)), PortState.CLOSED),
        (rules.BounceOutcome((150, 426)), PortState.CLOSED),
        (rules.BounceOutcome((150,), timed_out=True), PortState.FILTERED),
        (rules.BounceOutcome((), timed_out=True), PortState.FILTERED),
        (rules.BounceOutcome(()), PortState.CLOSED),
    ],
)
def test_nmap_bounce_rules(outcome: rules.BounceOutcome, state: PortState) -> None:
    assert verdict(outcome) == (state, Reason.NO_RESPONSE)  # nmap 7.93 XML: reason="no-response"


def test_scan_delay_spaces_port_commands_across_connections() -> None:
    """--scan-delay (the shared ``pacing.RateLimiter``) gates PORT: a connection that may not
    send yet waits in READY until its deadline, then sends; the pacer is scan-wide."""
    from twinscan.protocol.pacing import RateLimiter

    queue = SharedQueue(
        deque((TARGET, p) for p in (2000, 2001, 2002)), pacer=RateLimiter(min_gap_s=0.5)
    )
    a, b = (BounceSession(queue, user="anonymous", password="x", calibration=None) for _ in "ab")
    for s in (a, b):
        s.start(0.0)
        say(s, 220)
        say(s, 331)
    assert say(a, 230) == [port_command(TARGET, 2000)]  # eager unknown: PORT goes out
    assert say(b, 230) == []  # the scan-wide gap is not over
    assert b.phase is Phase.READY and b.deadline == pytest.approx(0.5)
    assert b.on_timeout(0.5) == [port_command(TARGET, 2001)]
    assert say(a, 425, 0.6) == []  # decided (closed); 2002 must wait for 1.0
    assert a.phase is Phase.READY and a.deadline == pytest.approx(1.0)
    assert a.on_timeout(1.0) == [port_command(TARGET, 2002)]
