"""What every detector eats and emits: ``Event`` in, ``Alert`` out.

A detector is a small pure object: no clock, no sockets, no files. It is fed events in time
order (``feed(events)``) and returns the alerts they raised; its state is its own. Time is
whatever ``Event.t`` says, so a test can replay a scan at any pace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import NamedTuple, Protocol

from twinscan.core.vocab import Technique
from twinscan.detect.contacts import TECH_CODE, TECHNIQUES, Outcome
from twinscan.detect.fields import PROTO_TCP, PROTO_UDP

__all__ = [
    "PROTO_TCP",
    "PROTO_UDP",
    "TECHNIQUES",
    "TECH_CODE",
    "Alert",
    "Detector",
    "Event",
    "EventRow",
    "Outcome",
    "event",
]


class Event(NamedTuple):
    """One contact as the detectors see it (see ``twinscan.detect.contacts``)."""

    t: float  # when the outcome was known (the reply, or the probe when none came)
    src: int  # IPv4 address as an integer
    dst: int
    proto: int  # 6 or 17
    dport: int
    technique: int  # code into contacts.TECHNIQUES
    outcome: int  # Outcome value
    completed: bool  # the initiator finished a three-way handshake
    orig_rst: bool  # the initiator reset the conversation
    data: bool  # payload in either direction
    tries: int  # copies of the first packet


#: What ``feed`` takes: an ``Event`` or a plain tuple in its field order (the runner passes
#: plain tuples, built faster than named ones).
EventRow = tuple[float, int, int, int, int, int, int, bool, bool, bool, int]

EVENT_COLUMNS = (
    "t_event",
    "src",
    "dst",
    "proto",
    "dport",
    "technique",
    "outcome",
    "completed",
    "orig_rst",
    "data",
    "tries",
)


def event(
    t: float,
    src: int,
    dst: int,
    dport: int,
    technique: Technique = Technique.SYN,
    outcome: Outcome = Outcome.RST,
    *,
    completed: bool = False,
    orig_rst: bool = False,
    data: bool = False,
    tries: int = 1,
) -> Event:
    """An ``Event`` with readable arguments (tests and docs)."""
    proto = PROTO_UDP if technique is Technique.UDP else PROTO_TCP
    return Event(
        t,
        src,
        dst,
        proto,
        dport,
        TECH_CODE[technique],
        int(outcome),
        completed,
        orig_rst,
        data,
        tries,
    )


@dataclasses.dataclass(frozen=True, slots=True)
class Alert:
    """A detector's verdict that ``scanner`` is scanning.

    ``target`` is set for alerts about one scanned host, ``port`` for alerts about one port
    across hosts; ``since`` is where the detector's evidence starts (its window, epoch or
    walk) and ``at`` the time of the event that crossed the threshold.
    """

    detector: str
    kind: str
    scanner: int
    proto: int
    since: float
    at: float
    target: int | None = None
    port: int | None = None


class Detector(Protocol):
    """A scan detector: fed events in time order, returns the alerts they raise."""

    name: str

    def feed(self, events: Iterable[EventRow]) -> list[Alert]: ...
