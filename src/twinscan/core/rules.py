"""nmap's verdict rules as data, and the pure functions that apply them (sans-IO).

Sources (nmap 7.9x): ``scan_engine_raw.cc`` (TCP replies, ICMPv4/v6 errors, UDP replies),
``scan_engine.cc`` ``set_default_port_state`` (no reply) and ``ultrascan_port_pspec_update``
(what a later reply may override), ``scan_engine_connect.cc`` (connect errno), ``nmap_ftp.cc``
(FTP bounce) and ``portreasons.cc`` (reason strings).

Nothing here touches a socket, a clock or scapy: a reply is a small value object.
"""

from __future__ import annotations

import errno as _errno
from collections.abc import Mapping
from typing import Final, NamedTuple

from twinscan.core.errors import ScanFailed
from twinscan.core.vocab import PortState, Reason, Technique

S = PortState
R = Reason
T = Technique

# TCP flag bits.
FIN: Final = 0x01
SYN: Final = 0x02
RST: Final = 0x04
PSH: Final = 0x08
ACK: Final = 0x10
URG: Final = 0x20


class Verdict(NamedTuple):
    state: PortState
    reason: Reason


# --- reply values -----------------------------------------------------------------------


# (NamedTuples, not dataclasses: every scan imports these, and a dataclass costs ~0.7 ms of
# start-up to create, a NamedTuple ~0.1)
class TcpReply(NamedTuple):
    """A TCP segment from the target answering a probe."""

    flags: int
    window: int = 0


class IcmpReply(NamedTuple):
    """An ICMP (v4) or ICMPv6 error quoting a probe. ``from_target``: sent by the probed host."""

    type: int
    code: int
    from_target: bool = True
    v6: bool = False


class UdpReply:
    """Any UDP datagram from the probed port (it carries nothing a verdict reads)."""

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, UdpReply)

    def __hash__(self) -> int:
        return hash(UdpReply)

    def __repr__(self) -> str:
        return "UdpReply()"


class ConnectOutcome(NamedTuple):
    """How a non-blocking ``connect()`` ended: ``errno`` 0 means it connected."""

    errno: int


class BounceOutcome(NamedTuple):
    """What an FTP relay answered to ``LIST`` after ``PORT`` (nmap_ftp.cc).

    ``codes`` are the reply codes in order (e.g. ``(150, 226)``); ``timed_out`` means the
    relay went quiet before a final reply.
    """

    codes: tuple[int, ...]
    timed_out: bool = False


Reply = TcpReply | IcmpReply | UdpReply | ConnectOutcome | BounceOutcome


# --- the tables ---------------------------------------------------------------------------

#: State when no reply arrived after all retransmissions (scan_engine.cc set_default_port_state).
NO_RESPONSE: Final[Mapping[Technique, PortState]] = {
    T.CONNECT: S.FILTERED,
    T.SYN: S.FILTERED,
    T.ACK: S.FILTERED,
    T.WINDOW: S.FILTERED,
    T.FIN: S.OPEN_FILTERED,
    T.XMAS: S.OPEN_FILTERED,
    T.NULL: S.OPEN_FILTERED,
    T.MAIMON: S.OPEN_FILTERED,
    T.UDP: S.OPEN_FILTERED,
    T.FTP_BOUNCE: S.FILTERED,
}

#: State a RST gives, per technique (scan_engine_raw.cc: Window looks at the window field).
RST_STATE: Final[Mapping[Technique, PortState]] = {
    T.SYN: S.CLOSED,
    T.ACK: S.UNFILTERED,
    T.FIN: S.CLOSED,
    T.XMAS: S.CLOSED,
    T.NULL: S.CLOSED,
    T.MAIMON: S.CLOSED,
}

#: TCP flags of each technique's probe as it goes on the wire (scan_engine_raw.cc; connect and
#: FTP bounce: the SYN the kernel sends). The raw engine builds its probes and the lab's truth
#: predicts replies from this one table.
PROBE_FLAGS: Final[Mapping[Technique, int]] = {
    T.CONNECT: SYN,
    T.SYN: SYN,
    T.FIN: FIN,
    T.XMAS: FIN | PSH | URG,
    T.NULL: 0,
    T.ACK: ACK,
    T.WINDOW: ACK,
    T.MAIMON: FIN | ACK,
    T.FTP_BOUNCE: SYN,
}

#: ICMPv4 destination-unreachable (type 3) codes nmap acts on, with their reason
#: (portreasons.cc icmp_to_reason). Other codes are logged as unexpected and change nothing.
ICMP4_UNREACH: Final[Mapping[int, Reason]] = {
    0: R.NET_UNREACH,
    1: R.HOST_UNREACH,
    2: R.PROTO_UNREACH,
    3: R.PORT_UNREACH,
    9: R.NET_PROHIBITED,
    10: R.HOST_PROHIBITED,
    13: R.ADMIN_PROHIBITED,
}
ICMP4_TIME_EXCEEDED: Final = 11

#: ICMPv6 destination-unreachable (type 1) codes and their reason (scan_engine_raw.cc).
ICMP6_UNREACH: Final[Mapping[int, Reason]] = {
    0: R.NO_ROUTE,
    1: R.ADMIN_PROHIBITED,
    2: R.BEYOND_SCOPE,
    3: R.HOST_UNREACH,
    4: R.PORT_UNREACH,
    5: R.ADMIN_PROHIBITED,
    6: R.REJECT_ROUTE,
}
ICMP6_UNREACH_TYPE: Final = 1
ICMP6_PARAM_PROBLEM: Final = 4

#: connect() errno -> verdict (scan_engine_connect.cc). Errors not listed are fatal in nmap.
CONNECT_ERRNO: Final[Mapping[int, Verdict]] = {
    0: Verdict(S.OPEN, R.SYN_ACK),
    _errno.ECONNREFUSED: Verdict(S.CLOSED, R.CONN_REFUSED),
    _errno.ETIMEDOUT: Verdict(S.FILTERED, R.NO_RESPONSE),
    _errno.EHOSTDOWN: Verdict(S.FILTERED, R.NO_RESPONSE),
    _errno.EHOSTUNREACH: Verdict(S.FILTERED, R.HOST_UNREACH),
    _errno.ENETUNREACH: Verdict(S.FILTERED, R.NET_UNREACH),
    _errno.EACCES: Verdict(S.FILTERED, R.ADMIN_PROHIBITED),
    _errno.ENOPROTOOPT: Verdict(S.FILTERED, R.PROTO_UNREACH),
    _errno.ENONET: Verdict(S.FILTERED, R.DEST_UNREACH),
}

#: The states each technique can produce; anything else from ``classify`` is a bug.
#: (An ICMPv6 parameter problem, code 0, means "open" for any raw technique, as in nmap.)
LEGAL_STATES: Final[Mapping[Technique, frozenset[PortState]]] = {
    T.CONNECT: frozenset({S.OPEN, S.CLOSED, S.FILTERED}),
    T.SYN: frozenset({S.OPEN, S.CLOSED, S.FILTERED}),
    T.WINDOW: frozenset({S.OPEN, S.CLOSED, S.FILTERED}),
    T.ACK: frozenset({S.UNFILTERED, S.FILTERED, S.OPEN}),
    T.FIN: frozenset({S.CLOSED, S.FILTERED, S.OPEN_FILTERED, S.OPEN}),
    T.XMAS: frozenset({S.CLOSED, S.FILTERED, S.OPEN_FILTERED, S.OPEN}),
    T.NULL: frozenset({S.CLOSED, S.FILTERED, S.OPEN_FILTERED, S.OPEN}),
    T.MAIMON: frozenset({S.CLOSED, S.FILTERED, S.OPEN_FILTERED, S.OPEN}),
    T.UDP: frozenset({S.OPEN, S.CLOSED, S.FILTERED, S.OPEN_FILTERED, S.CLOSED_FILTERED}),
    T.FTP_BOUNCE: frozenset({S.OPEN, S.CLOSED, S.FILTERED}),
}


class UnexpectedConnectError(ScanFailed):
    """A connect() error nmap treats as fatal ("Strange SO_ERROR")."""


# --- the functions ------------------------------------------------------------------------


def no_response(technique: Technique, *, defeat_icmp_ratelimit: bool = False) -> Verdict:
    """The verdict for a port that never answered."""
    if technique is T.UDP and defeat_icmp_ratelimit:
        return Verdict(S.CLOSED_FILTERED, R.NO_RESPONSE)
    return Verdict(NO_RESPONSE[technique], R.NO_RESPONSE)


def interpret(technique: Technique, reply: Reply) -> Verdict | None:
    """The verdict one reply implies, or ``None`` when nmap ignores such a reply."""
    if isinstance(reply, TcpReply):
        return _interpret_tcp(technique, reply)
    if isinstance(reply, IcmpReply):
        return _interpret_icmp(technique, reply)
    if isinstance(reply, UdpReply):
        return Verdict(S.OPEN, R.UDP_RESPONSE) if technique is T.UDP else None
    if isinstance(reply, ConnectOutcome):
        if technique is not T.CONNECT:
            return None
        try:
            return CONNECT_ERRNO[reply.errno]
        except KeyError:
            raise UnexpectedConnectError(
                _errno.errorcode.get(reply.errno, str(reply.errno))
            ) from None
    if isinstance(reply, BounceOutcome):
        return _interpret_bounce(reply) if technique is T.FTP_BOUNCE else None
    raise TypeError(f"not a reply: {reply!r}")


def _interpret_tcp(technique: Technique, reply: TcpReply) -> Verdict | None:
    # Same order as scan_engine_raw.cc: SYN/ACK (SYN scan), then RST, then a bare SYN.
    if technique is T.SYN and reply.flags & (SYN | ACK) == SYN | ACK:
        return Verdict(S.OPEN, R.SYN_ACK)
    if reply.flags & RST:
        if technique is T.WINDOW:
            return Verdict(S.OPEN if reply.window > 0 else S.CLOSED, R.RESET)
        state = RST_STATE.get(technique)
        return Verdict(state, R.RESET) if state is not None else None
    if technique is T.SYN and reply.flags & SYN:
        return Verdict(S.OPEN, R.SPLIT_HANDSHAKE_SYN)  # TCP split handshake
    return None  # "Received scan response with unexpected TCP flags"


def _interpret_icmp(technique: Technique, reply: IcmpReply) -> Verdict | None:
    if technique in (T.CONNECT, T.FTP_BOUNCE):
        return None  # the kernel or the relay sees these, not the scanner
    if reply.v6:
        if reply.type == ICMP6_PARAM_PROBLEM:
            # code 0 "erroneous header field": understood, so open; 1 "next header": filtered.
            state = {0: S.OPEN, 1: S.FILTERED}.get(reply.code)
            return Verdict(state, R.PARAM_PROBLEM) if state is not None else None
        if reply.type != ICMP6_UNREACH_TYPE or reply.code not in ICMP6_UNREACH:
            return None  # ICMPv6 time exceeded and others are not read by the port scan
        reason = ICMP6_UNREACH[reply.code]
        if reply.code == 4 and technique is T.UDP and reply.from_target:
            return Verdict(S.CLOSED, reason)
        return Verdict(S.FILTERED, reason)
    if reply.type == ICMP4_TIME_EXCEEDED:
        return Verdict(S.FILTERED, R.TIME_EXCEEDED)
    if reply.type != 3 or reply.code not in ICMP4_UNREACH:
        return None  # "Unexpected ICMP type/code 3/%d unreachable packet"
    reason = ICMP4_UNREACH[reply.code]
    if reply.code == 3 and technique is T.UDP and reply.from_target:
        return Verdict(S.CLOSED, reason)
    return Verdict(S.FILTERED, reason)


def _interpret_bounce(reply: BounceOutcome) -> Verdict:
    """nmap_ftp.cc bounce_scan: 1xx/2xx to LIST -> open; silence -> filtered; else closed."""
    codes = reply.codes
    if not codes:
        # recvtime() timed out -> filtered; the relay hung up (0 bytes, no timeout) -> closed.
        return Verdict(S.FILTERED if reply.timed_out else S.CLOSED, R.NO_RESPONSE)
    first = codes[0]
    if 100 <= first < 200:
        if len(codes) == 1:
            # 150 then nothing: nmap sends ABOR and calls the port filtered.
            return Verdict(S.FILTERED, R.NO_RESPONSE)
        second = codes[1]
        if 200 <= second < 300:
            return Verdict(S.OPEN, R.NO_RESPONSE)
        return Verdict(S.CLOSED, R.NO_RESPONSE)
    if 200 <= first < 300:
        return Verdict(S.OPEN, R.NO_RESPONSE)
    return Verdict(S.CLOSED, R.NO_RESPONSE)


def merge(technique: Technique, old: Verdict | None, new: Verdict) -> Verdict:
    """Which verdict stands when a port already has one (scan_engine.cc ultrascan_port_pspec_update)."""
    if old is None or old.state is new.state:
        return old if old is not None else new
    noresp_open = technique.no_response_means_open
    keep_new: bool
    match old.state:
        case S.OPEN:
            keep_new = noresp_open
        case S.CLOSED:
            keep_new = not noresp_open and new.state is not S.FILTERED
        case S.FILTERED:
            keep_new = not noresp_open or new.state is not S.OPEN
        case S.UNFILTERED:
            keep_new = new.state in (S.OPEN, S.CLOSED)
        case S.OPEN_FILTERED | S.CLOSED_FILTERED:
            keep_new = True
    return new if keep_new else old


def classify(
    technique: Technique, reply: Reply | None, *, defeat_icmp_ratelimit: bool = False
) -> Verdict:
    """Map one probe's reply, or its absence after retries, to nmap's (state, reason).

    A reply nmap ignores (unexpected TCP flags, an ICMP code outside the table) leaves the
    port at its no-response verdict, as it does in nmap.
    """
    if reply is not None:
        verdict = interpret(technique, reply)
        if verdict is not None:
            return verdict
    return no_response(technique, defeat_icmp_ratelimit=defeat_icmp_ratelimit)


def classify_all(
    technique: Technique, replies: list[Reply], *, defeat_icmp_ratelimit: bool = False
) -> Verdict:
    """Fold every reply a port received, in arrival order, through ``merge``."""
    verdict: Verdict | None = None
    for reply in replies:
        new = interpret(technique, reply)
        if new is not None:
            verdict = merge(technique, verdict, new)
    if verdict is None:
        return no_response(technique, defeat_icmp_ratelimit=defeat_icmp_ratelimit)
    return verdict
