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
from twinscan.detect.base import PROTO_TCP, TECH_CODE, Alert, EventRow, Outcome

PORT_SCAN_THRESHOLD: Final = 15
ADDR_SCAN_THRESHOLD: Final = 25
INTERVAL: Final = 300.0

_SYN_CODES = frozenset({TECH_CODE[Technique.SYN], TECH_CODE[Technique.CONNECT]})


_FAILED = frozenset({int(Outcome.SILENT), int(Outcome.RST), int(Outcome.UNREACH)})
_OPEN = int(Outcome.OPEN)


def failed(ev: EventRow) -> bool:
    """scan.zeek's notion of a failed connection (see the module docstring)."""
    _t, _src, _dst, proto, _dport, tech, outcome, _completed, orig_rst, data, _tries = ev
    if proto != PROTO_TCP or tech not in _SYN_CODES or data:
        return False
    return outcome in _FAILED or (outcome == _OPEN and orig_rst)


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

    def feed(self, events: Iterable[EventRow]) -> list[Alert]:
        out: list[Alert] = []
        ports_of, hosts_of, done = self._ports, self._hosts, self._done
        interval = self.interval
        for ev in events:
            if not failed(ev):
                continue
            t, src, dst, _proto, dport = ev[:5]
            if self._origin is None:
                self._origin = t
            epoch = int((t - self._origin) // interval)
            if epoch != self._epoch:
                self._epoch = epoch
                ports_of.clear()
                hosts_of.clear()
                done.clear()
            ports = ports_of.get((src, dst))
            if ports is None:
                ports = ports_of[(src, dst)] = set()
            ports.add(dport)
            if len(ports) >= self.port_threshold and ("p", src, dst) not in done:
                done.add(("p", src, dst))
                since = self._origin + epoch * interval
                out.append(Alert(self.name, "port-scan", src, PROTO_TCP, since, t, target=dst))
            hosts = hosts_of.get((src, dport))
            if hosts is None:
                hosts = hosts_of[(src, dport)] = set()
            hosts.add(dst)
            if len(hosts) >= self.addr_threshold and ("a", src, dport) not in done:
                done.add(("a", src, dport))
                since = self._origin + epoch * interval
                out.append(Alert(self.name, "address-scan", src, PROTO_TCP, since, t, port=dport))
        return out
