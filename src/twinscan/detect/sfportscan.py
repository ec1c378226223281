"""Snort's sfPortscan (Snort 3 ``port_scan``), sensitivity levels low, medium and high.

Transcribed from snort3 ``src/network_inspectors/port_scan/ps_detect.cc`` and the thresholds
of ``lua/snort_defaults.lua`` (the same numbers as Snort 2's ``doc/README.sfportscan``):

- Two trackers per protocol: the *scanned* host (keyed by destination; its ``u_ip_count``
  counts changes of the source address) for portscans, the *scanner* (keyed by source; its
  ``u_ip_count`` counts changes of destination) for portsweeps.
- Each initiating packet adds to ``connection_count`` and counts an address change and a port
  change when they differ from the previous packet's (``ps_proto_update``: *changes*, not
  unique values). The window is checked first: a packet later than the window's end resets
  the tracker, alerts included, and opens a new window (low 60 s, medium 90 s, high 600 s).
- A completed three-way handshake (TCP) or a datagram back (UDP) takes one off
  ``connection_count``; a RST on an unestablished conversation or an ICMP unreachable is a
  negative response and adds to ``priority_count``.
- Portscan (``ps_alert_one_to_one``): scanned ``priority >= rejects``, ``u_ip < nets``,
  ``u_port >= ports`` and scanner ``priority >= rejects``. The filtered variant uses
  ``connection_count >= scans`` instead of the priority counts and does not exist when
  ``scans`` is 0 (low). Portsweep (``ps_alert_one_to_many``) is the same test on the
  scanner tracker with ``u_ip >= nets`` and ``u_port <= ports``. One alert per tracker per
  window.

Not modelled: decoy and distributed portscans, ICMP and IP-protocol sweeps, open-port
logging, and Snort's integer-second clock. Every ICMP destination unreachable counts as a
negative response (Snort: only port unreachable and "packet filtered").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Final

from twinscan.detect.base import PROTO_TCP, PROTO_UDP, Alert, EventRow, Outcome


@dataclasses.dataclass(frozen=True)
class Thresholds:
    """Snort 3's ``{scans, rejects, nets, ports}`` (Snort 2: connection, priority, ip, port)."""

    scans: int
    rejects: int
    nets: int
    ports: int


@dataclasses.dataclass(frozen=True)
class Level:
    name: str
    window: float
    tcp_ports: Thresholds
    tcp_sweep: Thresholds
    udp_ports: Thresholds
    udp_sweep: Thresholds


#: snort3 lua/snort_defaults.lua default_{low,med,hi}_port_scan; windows from ps_module.cc.
LEVELS: Final[dict[str, Level]] = {
    "low": Level(
        "low",
        60.0,
        tcp_ports=Thresholds(0, 5, 25, 5),
        tcp_sweep=Thresholds(0, 5, 5, 15),
        udp_ports=Thresholds(0, 5, 25, 5),
        udp_sweep=Thresholds(0, 5, 5, 15),
    ),
    "medium": Level(
        "medium",
        90.0,
        tcp_ports=Thresholds(200, 10, 60, 15),
        tcp_sweep=Thresholds(30, 7, 7, 10),
        udp_ports=Thresholds(200, 10, 60, 15),
        udp_sweep=Thresholds(30, 5, 5, 20),
    ),
    "high": Level(
        "high",
        600.0,
        tcp_ports=Thresholds(200, 5, 100, 10),
        tcp_sweep=Thresholds(30, 3, 3, 10),
        udp_ports=Thresholds(200, 3, 100, 10),
        udp_sweep=Thresholds(30, 3, 3, 10),
    ),
}


class _Tracker:
    """Snort's ``PS_PROTO``."""

    __slots__ = (
        "alerts",
        "connections",
        "last_ip",
        "last_port",
        "priority",
        "start",
        "u_ip",
        "u_port",
        "window",
    )

    def __init__(self) -> None:
        self.window = float("-inf")
        self.reset(float("-inf"), 0.0)

    def reset(self, t: float, length: float) -> None:
        self.connections = 0
        self.priority = 0
        self.u_ip = 0
        self.u_port = 0
        self.last_ip = -1
        self.last_port = -1
        self.alerts = False
        self.start = t
        self.window = t + length

    def initiate(self, t: float, length: float, ip: int, port: int, count: int) -> None:
        if t > self.window:
            self.reset(t, length)
        self.connections += count
        if ip != self.last_ip:
            self.u_ip += 1
            self.last_ip = ip
        if port != self.last_port:
            self.u_port += 1
            self.last_port = port

    def clear(self) -> None:
        self.connections = max(self.connections - 1, 0)


class SfPortscan:
    """sfPortscan at one sensitivity level (``LEVELS``)."""

    def __init__(self, level: Level | str) -> None:
        self.level = LEVELS[level] if isinstance(level, str) else level
        self.name = f"sfportscan-{self.level.name}"
        self._scanned: dict[tuple[int, int], _Tracker] = {}
        self._scanner: dict[tuple[int, int], _Tracker] = {}

    def feed(self, events: Iterable[EventRow]) -> list[Alert]:
        out: list[Alert] = []
        lv = self.level
        length = lv.window
        scanned_of, scanner_of = self._scanned, self._scanner
        rst, unreach, open_ = int(Outcome.RST), int(Outcome.UNREACH), int(Outcome.OPEN)
        for ev in events:
            t, src, dst, proto, dport, _tech, outcome, completed, _orst, _data, tries = ev
            if proto == PROTO_TCP:
                ports_th, sweep_th, label = lv.tcp_ports, lv.tcp_sweep, "tcp"
                cleared = completed
            elif proto == PROTO_UDP:
                ports_th, sweep_th, label = lv.udp_ports, lv.udp_sweep, "udp"
                cleared = outcome == open_
            else:
                continue
            scanned = scanned_of.get((dst, proto))
            if scanned is None:
                scanned = scanned_of[(dst, proto)] = _Tracker()
            scanner = scanner_of.get((src, proto))
            if scanner is None:
                scanner = scanner_of[(src, proto)] = _Tracker()
            scanned.initiate(t, length, src, dport, tries)
            scanner.initiate(t, length, dst, dport, tries)
            if cleared:
                scanned.clear()
                scanner.clear()
            if outcome == rst or outcome == unreach:
                scanned.priority += 1
                scanner.priority += 1
            if (
                not scanned.alerts
                and scanned.u_ip < ports_th.nets
                and scanned.u_port >= ports_th.ports
            ):
                kind = None
                if scanned.priority >= ports_th.rejects and scanner.priority >= ports_th.rejects:
                    kind = f"{label}-portscan"
                elif ports_th.scans and scanned.connections >= ports_th.scans:
                    kind = f"{label}-filtered-portscan"
                if kind:
                    scanned.alerts = True
                    out.append(Alert(self.name, kind, src, proto, scanned.start, t, target=dst))
            if (
                not scanner.alerts
                and scanner.u_ip >= sweep_th.nets
                and scanner.u_port <= sweep_th.ports
            ):
                kind = None
                if scanner.priority >= sweep_th.rejects:
                    kind = f"{label}-portsweep"
                elif sweep_th.scans and scanner.connections >= sweep_th.scans:
                    kind = f"{label}-filtered-portsweep"
                if kind:
                    scanner.alerts = True
                    out.append(Alert(self.name, kind, src, proto, scanner.start, t))
        return out
