"""Threshold Random Walk (Jung, Paxson, Berger, Balakrishnan, IEEE S&P 2004).

A sequential hypothesis test per remote host over the outcomes of its *first contact* with
each distinct destination address (later contacts with the same address are ignored). A
success (SYN+ACK, a UDP answer, any other non-negative reply) multiplies the likelihood
ratio by ``θ1/θ0``; a failure (RST, ICMP unreachable, silence) by ``(1-θ1)/(1-θ0)``. At
``η1 = P_D/P_F`` the host is a scanner; at ``η0 = (1-P_D)/(1-P_F)`` it is benign and the walk
starts over. Parameters as in the paper and Bro's ``trw.bro``: θ0 0.8, θ1 0.2, P_D 0.99,
P_F 0.01, so four failed first contacts in a row (4^4 = 256 >= 99) flag a scanner.

A scanner is flagged once. Because only distinct addresses count, a vertical scan of one
host is a single observation: TRW is built for horizontal scans and worms.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Final

from twinscan.detect.base import Alert, EventRow, Outcome

THETA0: Final = 0.8
THETA1: Final = 0.2
P_D: Final = 0.99
P_F: Final = 0.01


class _Walk:
    __slots__ = ("contacted", "flagged", "ratio", "since")

    def __init__(self, t: float) -> None:
        self.ratio = 1.0
        self.since = t
        self.contacted: set[int] = set()
        self.flagged = False


class Trw:
    name = "trw"

    def __init__(
        self, theta0: float = THETA0, theta1: float = THETA1, p_d: float = P_D, p_f: float = P_F
    ) -> None:
        self.up = (1 - theta1) / (1 - theta0)
        self.down = theta1 / theta0
        self.eta1 = p_d / p_f
        self.eta0 = (1 - p_d) / (1 - p_f)
        self._walks: dict[int, _Walk] = {}

    def feed(self, events: Iterable[EventRow]) -> list[Alert]:
        out: list[Alert] = []
        success = {int(o) for o in Outcome if o.success}
        for t, src, dst, proto, _dport, _tech, outcome, *_rest in events:
            walk = self._walks.get(src)
            if walk is None:
                walk = self._walks[src] = _Walk(t)
            if walk.flagged or dst in walk.contacted:
                continue
            walk.contacted.add(dst)
            walk.ratio *= self.down if outcome in success else self.up
            if walk.ratio >= self.eta1:
                walk.flagged = True
                out.append(Alert(self.name, "scanner", src, proto, walk.since, t))
            elif walk.ratio <= self.eta0:
                walk.ratio = 1.0
                walk.since = t
        return out
