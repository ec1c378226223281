"""Zeek's ``policy/misc/scan.zeek`` (Khattak, Hall et al.; Zeek 2.x-5.x).

Transcribed from zeek/zeek ``scripts/policy/misc/scan.zeek``:

- Only *failed* TCP connections count (``connection_attempt``, ``connection_rejected`` and
  ``connection_reset`` through ``is_failed_conn``): a SYN that got no answer, a SYN answered
  by RST, or a handshake (or SYN+ACK) the originator reset with no data in either direction.
  A probe that does not start with a SYN is not a connection attempt to the script, so FIN,
  NULL, Xmas, ACK, Maimon and UDP scans are not counted.
- SumStats ``scan.port.fail``: unique failed ports per (scanner, victim); ``Port_Scan`` at
  ``port_scan_threshold = 15`` within ``port_scan_interval = 5min``.
- SumStats ``scan.addr.fail``: unique victims per (scanner, port); ``Address_Scan`` at
  ``addr_scan_threshold = 25`` within ``addr_scan_interval = 5min``.
- SumStats epochs are fixed intervals from the start (here: the first event), and a key's
  threshold is crossed at most once per epoch.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from twinscan.core.vocab import Technique
from twinscan.detect.base import PROTO_TCP, TECH_CODE, Alert, Event, Outcome

PORT_SCAN_THRESHOLD: Final = 15
ADDR_SCAN_THRESHOLD: Final = 25
INTERVAL: Final = 300.0

_SYN_CODES = frozenset({TECH_CODE[Technique.SYN], TECH_CODE[Technique.CONNECT]})


def failed(ev: Event) -> bool:
    """scan.zeek's notion of a failed connection (see the module docstring)."""
    if ev.proto != PROTO_TCP or ev.technique not in _SYN_CODES or ev.data:
        return False
    if ev.outcome in (Outcome.SILENT, Outcome.RST, Outcome.UNREACH):
        return True
    return ev.outcome == Outcome.OPEN and ev.orig_rst


class ZeekScan:
    name = "zeek-scan"

    def __init__(
        self,
        port_threshold: int = PORT_SCAN_THRESHOLD,
        addr_threshold: int = ADDR_SCAN_THRESHOLD,
        interval: float = INTERVAL,
    ) -> None:
        self.port_threshold = port_threshold
        self.addr_threshold = addr_threshold
        self.interval = interval
        self._origin: float | None = None
        self._epoch = -1
        self._ports: dict[tuple[int, int], set[int]] = {}
        self._hosts: dict[tuple[int, int], set[int]] = {}
        self._done: set[tuple[str, int, int]] = set()

    def feed(self, events: Iterable[Event]) -> list[Alert]:
        out: list[Alert] = []
        for ev in events:
            if not failed(ev):
                continue
            if self._origin is None:
                self._origin = ev.t
            epoch = int((ev.t - self._origin) // self.interval)
            if epoch != self._epoch:
                self._epoch = epoch
                self._ports.clear()
                self._hosts.clear()
                self._done.clear()
            since = self._origin + epoch * self.interval
            ports = self._ports.setdefault((ev.src, ev.dst), set())
            ports.add(ev.dport)
            if len(ports) >= self.port_threshold and ("p", ev.src, ev.dst) not in self._done:
                self._done.add(("p", ev.src, ev.dst))
                out.append(
                    Alert(self.name, "port-scan", ev.src, PROTO_TCP, since, ev.t, target=ev.dst)
                )
            hosts = self._hosts.setdefault((ev.src, ev.dport), set())
            hosts.add(ev.dst)
            if len(hosts) >= self.addr_threshold and ("a", ev.src, ev.dport) not in self._done:
                self._done.add(("a", ev.src, ev.dport))
                out.append(
                    Alert(self.name, "address-scan", ev.src, PROTO_TCP, since, ev.t, port=ev.dport)
                )
        return out
