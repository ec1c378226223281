"""Ground truth: what nmap should say for every (host, proto, port, technique) of a lab spec.

Pure (no I/O), and independent of the engines' rules: ``twinscan.core.rules`` (nmap's reply ->
verdict logic, which the engines use) is *not* imported here, so a wrong rule cannot agree with
itself. The truth is two small tables of its own:

1. what a probe *meets* on a host (``situation``): the host's silence, its conntrack rules, the
   first matching per-port firewall rule, else the listener (or its absence) on the port;
2. ``TABLE``: situation x technique -> nmap's (state, reason), written out cell by cell from
   nmap's documentation of each scan type (the port-state table in the reference notes,
   section 2.4, as corrected by running nmap 7.93 on the lab: Linux RSTs Window and Maimon
   probes to open ports, so -sW and -sM say closed there).

How a lab host (Linux, nftables on its input hook) answers, in rule order:

1. silent address: nothing ever answers (the connect() times out).
2. random loss: ignored here (an impairment, not a verdict).
3. conntrack: ``drop-invalid`` drops FIN, NULL, Xmas and Maimon probes (no SYN, RST or lone ACK:
   conntrack refuses to create an entry, the packet is INVALID); ``drop-new-non-syn`` drops a
   lone ACK (ACK and Window scans; NEW thanks to ``nf_conntrack_tcp_loose``).
4. the first matching per-port rule: drop, tcp-reset, or an ICMP destination-unreachable.
5. the TCP/IP stack: a listener answers SYN with SYN/ACK and any probe with ACK set with RST
   (window 0); a closed port answers everything with RST (window 0); a listener ignores FIN,
   NULL and Xmas; UDP services answer, silent sockets don't, closed ports send port-unreachable.

The truth is what is *real*: a closed UDP port on a rate-limited host is ``closed``, even though
nmap -T4 labels some of them ``open|filtered`` when the kernel suppresses the ICMP error.
``tests/lab/test_truth_independent.py`` checks every cell against ``rules.classify``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple

from twinscan.core.schema import PortVerdict
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique
from twinscan.lab.spec import Action, Conntrack, Host, LabSpec, UdpKind

if TYPE_CHECKING:
    from collections.abc import Iterable

    import pandas as pd

    from twinscan.request.ports import PortPlan

T = Technique
S = PortState
R = Reason


class Cell(NamedTuple):
    """nmap's verdict for one cell of the truth table."""

    state: PortState
    reason: Reason


#: Reply codes the lab's FTP relay (pyftpdlib) gives to PORT+LIST: connected -> 150 then 226;
#: refused or unreachable -> 425; the data connection timed out -> 421.
BOUNCE_OPEN: tuple[int, ...] = (150, 226)
BOUNCE_REFUSED: tuple[int, ...] = (425,)
BOUNCE_TIMEOUT: tuple[int, ...] = (421,)

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

#: The probes each conntrack rule drops before any per-port rule sees them.
CONNTRACK_DROPS: dict[Conntrack, frozenset[Technique]] = {
    Conntrack.DROP_INVALID: frozenset({T.FIN, T.XMAS, T.NULL, T.MAIMON}),
    Conntrack.DROP_NEW_NON_SYN: frozenset({T.ACK, T.WINDOW}),
}

# What a probe meets (the rows of TABLE): a firewall action (Action values), or the port itself.
DROP = Action.DROP.value
LISTENER = "listener"  # TCP: a listening socket
TCP_CLOSED = "tcp-closed"  # TCP: nothing listening
UDP_SERVICE = "udp-service"  # UDP: a service that answers (dns, ntp, echo)
UDP_SILENT = "udp-silent"  # UDP: a bound socket that never answers
UDP_CLOSED = "udp-closed"  # UDP: nothing bound (ICMP port-unreachable)

_NR = Cell(S.FILTERED, R.NO_RESPONSE)
_OF = Cell(S.OPEN_FILTERED, R.NO_RESPONSE)
_RST_CLOSED = Cell(S.CLOSED, R.RESET)
_BOUNCE_CLOSED = Cell(S.CLOSED, R.NO_RESPONSE)  # the relay answers 425 or 421: nmap says closed

#: The TCP techniques whose no-response verdict is open|filtered (nmap set_default_port_state).
_OPEN_FILTERED_SCANS = (T.FIN, T.XMAS, T.NULL, T.MAIMON)


def _tcp_row(
    connect: Cell, syn: Cell, stealth: Cell, maimon: Cell, ack: Cell, window: Cell, bounce: Cell
) -> dict[Technique, Cell]:
    row = {T.CONNECT: connect, T.SYN: syn, T.MAIMON: maimon, T.ACK: ack, T.WINDOW: window}
    row |= dict.fromkeys((T.FIN, T.XMAS, T.NULL), stealth)
    row[T.FTP_BOUNCE] = bounce
    return row


def _icmp_row(reason: Reason, connect: Cell) -> dict[Technique, Cell]:
    """An ICMP destination-unreachable on a TCP port: every raw scan says filtered with the
    ICMP's reason; connect() fails with the kernel's errno for it; the relay gets 425."""
    f = Cell(S.FILTERED, reason)
    return _tcp_row(connect, f, f, f, f, f, _BOUNCE_CLOSED)


#: A port that answers every probe with RST (window 0): closed, or a tcp-reset reject.
_RST_ROW = _tcp_row(
    Cell(S.CLOSED, R.CONN_REFUSED),
    _RST_CLOSED,
    _RST_CLOSED,
    _RST_CLOSED,
    Cell(S.UNFILTERED, R.RESET),
    _RST_CLOSED,
    _BOUNCE_CLOSED,
)  # fmt: skip


#: situation x technique -> (state, reason), TCP techniques. Columns: connect, syn,
#: fin/xmas/null, maimon, ack, window, ftp-bounce.
TCP_TABLE: dict[str, dict[Technique, Cell]] = {
    DROP: _tcp_row(_NR, _NR, _OF, _OF, _NR, _NR, _BOUNCE_CLOSED),
    # nft "reject with tcp reset": RST|ACK, window 0 -- what a closed port sends
    Action.TCP_RESET.value: _RST_ROW,
    # ICMP code 3 makes connect() fail with ECONNREFUSED; codes 10 and 13 with EHOSTUNREACH;
    # code 0 with ENETUNREACH (Linux icmp_err_convert[])
    Action.PORT_UNREACHABLE.value: _icmp_row(R.PORT_UNREACH, Cell(S.CLOSED, R.CONN_REFUSED)),
    Action.HOST_PROHIBITED.value: _icmp_row(R.HOST_PROHIBITED, Cell(S.FILTERED, R.HOST_UNREACH)),
    Action.ADMIN_PROHIBITED.value: _icmp_row(R.ADMIN_PROHIBITED, Cell(S.FILTERED, R.HOST_UNREACH)),
    Action.NET_UNREACHABLE.value: _icmp_row(R.NET_UNREACH, Cell(S.FILTERED, R.NET_UNREACH)),
    # a listener: SYN/ACK to SYN; RST (window 0) to anything with ACK; FIN/NULL/Xmas ignored
    LISTENER: _tcp_row(
        Cell(S.OPEN, R.SYN_ACK),
        Cell(S.OPEN, R.SYN_ACK),
        _OF,
        _RST_CLOSED,
        Cell(S.UNFILTERED, R.RESET),
        _RST_CLOSED,
        Cell(S.OPEN, R.NO_RESPONSE),
    ),  # fmt: skip
    # nothing listening: RST to everything
    TCP_CLOSED: _RST_ROW,
}

#: situation -> (state, reason) for a UDP probe.
UDP_TABLE: dict[str, Cell] = {
    DROP: _OF,
    Action.PORT_UNREACHABLE.value: Cell(S.CLOSED, R.PORT_UNREACH),
    Action.HOST_PROHIBITED.value: Cell(S.FILTERED, R.HOST_PROHIBITED),
    Action.ADMIN_PROHIBITED.value: Cell(S.FILTERED, R.ADMIN_PROHIBITED),
    Action.NET_UNREACHABLE.value: Cell(S.FILTERED, R.NET_UNREACH),
    UDP_SERVICE: Cell(S.OPEN, R.UDP_RESPONSE),
    UDP_SILENT: _OF,
    UDP_CLOSED: Cell(S.CLOSED, R.PORT_UNREACH),
}


def situation(host: Host, technique: Technique, port: int) -> str:
    """What ``technique``'s probe to ``host:port`` meets: a row of ``TCP_TABLE``/``UDP_TABLE``.

    For ftp-bounce it is what the relay's SYN meets on the target.
    """
    if host.silent:
        return DROP
    if any(technique in CONNTRACK_DROPS[ct] for ct in host.conntrack):
        return DROP
    proto = Proto.UDP if technique is T.UDP else Proto.TCP
    rule = host.rule_for(proto, port)
    if rule is not None:
        return rule.action.value
    if proto is Proto.UDP:
        kind = host.udp_services.get(port)
        if kind is None:
            return UDP_CLOSED
        return UDP_SILENT if kind is UdpKind.SILENT else UDP_SERVICE
    return LISTENER if port in host.tcp_listeners else TCP_CLOSED


def expected(host: Host, technique: Technique, port: int) -> Cell:
    """nmap's (state, reason) for one cell (for ftp-bounce: through the spec's relay)."""
    where = situation(host, technique, port)
    if technique is T.UDP:
        return UDP_TABLE[where]
    return TCP_TABLE[where][technique]


#: IPv6 (issue #17): the lab's ICMP rejections become ICMPv6 ones (``netns._ICMP6_TYPE``):
#: host- and admin-prohibited -> code 1 "administratively prohibited", net-unreachable ->
#: code 0 "no route". Raw scans read their reason from nmap's ICMPv6 table; connect() gets
#: Linux's errno for them (icmpv6_err_convert: code 1 EACCES, code 0 ENETUNREACH).
_V6_RAW_REASON = {
    Action.HOST_PROHIBITED.value: R.ADMIN_PROHIBITED,
    Action.ADMIN_PROHIBITED.value: R.ADMIN_PROHIBITED,
    Action.NET_UNREACHABLE.value: R.NO_ROUTE,
}
_V6_CONNECT = {
    Action.HOST_PROHIBITED.value: Cell(S.FILTERED, R.ADMIN_PROHIBITED),
    Action.ADMIN_PROHIBITED.value: Cell(S.FILTERED, R.ADMIN_PROHIBITED),
}


def expected6(host: Host, technique: Technique, port: int) -> Cell:
    """``expected`` for a probe to the host's IPv6 address."""
    cell = expected(host, technique, port)
    where = situation(host, technique, port)
    if technique is T.CONNECT:
        return _V6_CONNECT.get(where, cell)
    reason = _V6_RAW_REASON.get(where)
    return cell if reason is None else Cell(cell.state, reason)


def bounce_codes(target: Host, port: int) -> tuple[int, ...]:
    """The relay's reply codes to PORT+LIST at ``target:port`` (see ``BOUNCE_OPEN``...)."""
    where = situation(target, T.FTP_BOUNCE, port)
    if where == LISTENER:
        return BOUNCE_OPEN
    return BOUNCE_TIMEOUT if where == DROP else BOUNCE_REFUSED


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
    address that is not a spec host has no truth. A host's IPv6 address (a dual-stack lab)
    has truth only when ``hosts`` names it (``expected6``; no ftp-bounce over IPv6).
    """
    out: list[PortVerdict] = []
    wanted = None if hosts is None else set(hosts)
    chosen = [h for h in spec.hosts if wanted is None or h.address in wanted]
    chosen6 = [h for h in spec.hosts if wanted is not None and h.address6 in wanted]
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
        if technique is T.FTP_BOUNCE:
            continue
        for host in chosen6:
            for port in udp if technique is T.UDP else tcp:
                v = expected6(host, technique, port)
                out.append(
                    PortVerdict(
                        engine=Engine.TRUTH,
                        technique=technique,
                        host=str(host.address6),
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
