"""Ground truth: what nmap should say for every (host, proto, port, technique) of a lab spec.

Pure (no I/O): the spec says what each host's kernel and firewall do with each probe; this module
turns that into the reply the probe gets (a ``twinscan.core.rules`` reply value) and lets
``rules.classify`` turn the reply into nmap's (state, reason).

How a lab host (Linux, nftables on its input hook) answers, in rule order:

1. silent address: nothing ever answers (the connect() times out).
2. random loss: ignored here (an impairment, not a verdict).
3. conntrack: ``drop-invalid`` drops FIN, NULL, Xmas and Maimon probes (no SYN, RST or lone ACK:
   conntrack refuses to create an entry, the packet is INVALID); ``drop-new-non-syn`` drops a
   lone ACK (NEW thanks to ``nf_conntrack_tcp_loose``).
4. the first matching per-port rule: drop, tcp-reset, or an ICMP destination-unreachable.
5. the TCP/IP stack: a listener answers SYN with SYN/ACK and any probe with ACK set with RST
   (window 0); a closed port answers everything with RST (window 0); a listener ignores FIN,
   NULL and Xmas; UDP services answer, silent sockets don't, closed ports send port-unreachable.

The truth is what is *real*: a closed UDP port on a rate-limited host is ``closed``, even though
nmap -T4 labels some of them ``open|filtered`` when the kernel suppresses the ICMP error.
"""

from __future__ import annotations

import errno
from typing import TYPE_CHECKING

from twinscan.core import rules
from twinscan.core.schema import PortVerdict
from twinscan.core.vocab import Engine, Proto, Technique
from twinscan.lab.spec import Action, Conntrack, Host, LabSpec, UdpKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

    from twinscan.request.ports import PortPlan

T = Technique

#: TCP flags of each technique's probe (nmap's scan_engine_raw.cc): the one table in rules.
PROBE_FLAGS = rules.PROBE_FLAGS

#: ICMP destination-unreachable code each reject action sends.
ICMP_CODE: dict[Action, int] = {
    Action.NET_UNREACHABLE: 0,
    Action.PORT_UNREACHABLE: 3,
    Action.HOST_PROHIBITED: 10,
    Action.ADMIN_PROHIBITED: 13,
}

#: Linux icmp_err_convert[]: what connect() fails with for each ICMP unreachable code.
CONNECT_ERRNO_OF_ICMP: dict[int, int] = {
    0: errno.ENETUNREACH,
    3: errno.ECONNREFUSED,
    10: errno.EHOSTUNREACH,
    13: errno.EHOSTUNREACH,
}

#: Reply codes the lab's FTP relay (pyftpdlib) gives to PORT+LIST: connected -> 150 then 226;
#: refused or unreachable -> 425; the data connection timed out -> 421.
BOUNCE_OPEN = rules.BounceOutcome((150, 226))
BOUNCE_REFUSED = rules.BounceOutcome((425,))
BOUNCE_TIMEOUT = rules.BounceOutcome((421,))

#: Techniques the truth table covers, in report order.
TECHNIQUES: tuple[Technique, ...] = (
    T.CONNECT,
    T.SYN,
    T.FIN,
    T.XMAS,
    T.NULL,
    T.ACK,
    T.WINDOW,
    T.MAIMON,
    T.UDP,
    T.FTP_BOUNCE,
)

_DROPPED = object()


def _conntrack_dropped(host: Host, flags: int) -> bool:
    core = flags & (rules.FIN | rules.SYN | rules.RST | rules.ACK)
    if flags & (rules.SYN | rules.RST):
        invalid = False
    else:
        invalid = bool(flags & rules.FIN) or not flags & rules.ACK
    if invalid:
        return Conntrack.DROP_INVALID in host.conntrack
    return Conntrack.DROP_NEW_NON_SYN in host.conntrack and core != rules.SYN


def tcp_reply(host: Host, port: int, flags: int) -> rules.Reply | None:
    """What a raw TCP probe with ``flags`` to ``host:port`` gets back (None: nothing)."""
    if host.silent or _conntrack_dropped(host, flags):
        return None
    rule = host.rule_for(Proto.TCP, port)
    if rule is not None:
        if rule.action is Action.DROP:
            return None
        if rule.action is Action.TCP_RESET:
            return rules.TcpReply(rules.RST | rules.ACK, 0)
        return rules.IcmpReply(3, ICMP_CODE[rule.action])
    if port in host.tcp_listeners:
        if flags & rules.SYN:
            return rules.TcpReply(rules.SYN | rules.ACK, 65160)
        if flags & rules.ACK:
            return rules.TcpReply(rules.RST, 0)
        return None  # tcp_rcv_state_process: LISTEN discards FIN, NULL and Xmas
    return rules.TcpReply(rules.RST | rules.ACK, 0)


def connect_errno(host: Host, port: int) -> int:
    """How a connect() to ``host:port`` ends (0: connected)."""
    reply = tcp_reply(host, port, rules.SYN)
    if reply is None:
        return errno.ETIMEDOUT
    if isinstance(reply, rules.IcmpReply):
        return CONNECT_ERRNO_OF_ICMP[reply.code]
    assert isinstance(reply, rules.TcpReply)
    return 0 if reply.flags & rules.SYN else errno.ECONNREFUSED


def udp_reply(host: Host, port: int) -> rules.Reply | None:
    if host.silent:
        return None
    rule = host.rule_for(Proto.UDP, port)
    if rule is not None:
        if rule.action is Action.DROP:
            return None
        return rules.IcmpReply(3, ICMP_CODE[rule.action])
    kind = host.udp_services.get(port)
    if kind is None:
        return rules.IcmpReply(3, 3)
    return None if kind is UdpKind.SILENT else rules.UdpReply()


def bounce_outcome(target: Host, port: int) -> rules.BounceOutcome:
    err = connect_errno(target, port)
    if err == 0:
        return BOUNCE_OPEN
    if err == errno.ETIMEDOUT:
        return BOUNCE_TIMEOUT
    return BOUNCE_REFUSED


def expected(host: Host, technique: Technique, port: int) -> rules.Verdict:
    """nmap's (state, reason) for one cell (for ftp-bounce: through the spec's relay)."""
    reply: rules.Reply | None
    if technique is T.UDP:
        reply = udp_reply(host, port)
    elif technique is T.CONNECT:
        reply = rules.ConnectOutcome(connect_errno(host, port))
    elif technique is T.FTP_BOUNCE:
        reply = bounce_outcome(host, port)
    else:
        reply = tcp_reply(host, port, PROBE_FLAGS[technique])
    return rules.classify(technique, reply)


def truth_verdicts(
    spec: LabSpec,
    techniques: tuple[Technique, ...] = TECHNIQUES,
    *,
    ports: PortPlan | None = None,
    hosts: Iterable[str] | None = None,
) -> list[PortVerdict]:
    """Every cell of the truth table, as schema verdicts (engine ``truth``).

    By default the cells are the spec's port universe (``tcp_universe``/``udp_universe``) on
    every host, and for ftp-bounce ``bounce_targets`` x ``bounce_ports``. With ``ports`` (a
    scan request's port plan) the cells are exactly those ports instead — any port has a truth:
    one with no listener and no rule is closed (RST, ICMP port-unreachable), unless the host's
    firewall, conntrack rule or silence says otherwise — and ftp-bounce covers every host with
    the request's TCP ports. ``hosts`` (addresses) keeps only those hosts of the spec; an
    address that is not a spec host has no truth.
    """
    out: list[PortVerdict] = []
    wanted = None if hosts is None else set(hosts)
    chosen = [h for h in spec.hosts if wanted is None or h.address in wanted]
    tcp = spec.tcp_universe() if ports is None else ports.tcp
    udp = spec.udp_universe() if ports is None else ports.udp
    for technique in techniques:
        if technique is T.FTP_BOUNCE:
            if spec.scan.bounce_relay is None:
                continue
            if ports is None:
                targets = set(spec.scan.bounce_targets)
                cells = [
                    (h, p) for h in chosen if h.name in targets for p in spec.scan.bounce_ports
                ]
            else:
                cells = [(h, p) for h in chosen for p in tcp]
        else:
            cells = [(h, p) for h in chosen for p in (udp if technique is T.UDP else tcp)]
        for host, port in cells:
            v = expected(host, technique, port)
            out.append(
                PortVerdict(
                    engine=Engine.TRUTH,
                    technique=technique,
                    host=host.address,
                    proto=technique.proto,
                    port=port,
                    state=v.state,
                    reason=v.reason,
                )
            )
    return out


def truth_frame(
    spec: LabSpec,
    techniques: tuple[Technique, ...] = TECHNIQUES,
    *,
    ports: PortPlan | None = None,
    hosts: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The truth table as a results-schema DataFrame, in canonical order (hosts by address).

    ``ports`` and ``hosts`` as for ``truth_verdicts``: pass a scan request's port plan and
    targets to get the truth of every cell that scan asks about.
    """
    from twinscan.core.schema import sort_frame, to_frame

    return sort_frame(to_frame(truth_verdicts(spec, techniques, ports=ports, hosts=hosts)))
