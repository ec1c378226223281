"""scanlogd (Solar Designer, Openwall; ``scanlogd.c`` and ``params.h``, version 2.2).

Per source address, TCP only: each packet to a port not yet seen in the current entry adds a
weight, 3 for a privileged port (< 1024) and 1 for the others; a weight of 21
(``SCAN_WEIGHT_THRESHOLD`` = ``SCAN_MIN_COUNT`` 7 x ``PORT_WEIGHT_PRIV`` 3) logs a scan: 7
privileged ports, 21 others, or a mix. An entry lasts while packets to new ports keep coming
less than 3 s apart (``SCAN_DELAY_THRESHOLD``); a longer gap starts a new entry, which can log
again. Packets with ACK set never open an entry nor add a port ("ACK to a new port? This
could be an outgoing TCP connection"), so ACK and Maimon scans go unnoticed.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from twinscan.core.vocab import Technique
from twinscan.detect.base import PROTO_TCP, TECH_CODE, Alert, EventRow

PORT_WEIGHT_PRIV: Final = 3
PORT_WEIGHT_HIGH: Final = 1
SCAN_MIN_COUNT: Final = 7
SCAN_WEIGHT_THRESHOLD: Final = SCAN_MIN_COUNT * PORT_WEIGHT_PRIV
SCAN_DELAY_THRESHOLD: Final = 3.0

_WITH_ACK = frozenset({TECH_CODE[Technique.ACK], TECH_CODE[Technique.MAIMON]})


class _Entry:
    __slots__ = ("ports", "since", "timestamp", "weight")

    def __init__(self, t: float, port: int) -> None:
        self.timestamp = t
        self.since = t
        self.ports = {port}
        self.weight = weight(port)


def weight(port: int) -> int:
    return PORT_WEIGHT_PRIV if port < 1024 else PORT_WEIGHT_HIGH


class Scanlogd:
    name = "scanlogd"

    def __init__(self, delay: float = SCAN_DELAY_THRESHOLD) -> None:
        self.delay = delay
        self._entries: dict[int, _Entry] = {}

    def feed(self, events: Iterable[EventRow]) -> list[Alert]:
        out: list[Alert] = []
        entries = self._entries
        for t, src, _dst, proto, dport, tech, *_rest in events:
            if proto != PROTO_TCP:
                continue
            with_ack = tech in _WITH_ACK
            entry = entries.get(src)
            if entry is not None and t - entry.timestamp <= self.delay:
                if dport in entry.ports or with_ack:
                    continue
                entry.timestamp = t
                if entry.weight >= SCAN_WEIGHT_THRESHOLD:
                    continue  # logged already
                entry.weight += weight(dport)
                entry.ports.add(dport)
                if entry.weight >= SCAN_WEIGHT_THRESHOLD:
                    out.append(Alert(self.name, "scan", src, PROTO_TCP, entry.since, t))
                continue
            if with_ack:
                continue
            entries[src] = _Entry(t, dport)
        return out
