"""Findings: the table from (port state, the port's role) to a finding, and the audit (pure).

A cell is one (host, proto, port) as one technique saw it. ``TABLE`` gives, for each of nmap's
six states and each role, the finding or None (compliant). The ambiguous states are decided by
what they can and cannot show:

- ``open``: the port accepts traffic (a SYN/ACK, a connection, a UDP answer).
- ``closed``: the host's own stack answered (RST, ICMP port-unreachable for UDP): not open, and
  nothing filtered it.
- ``filtered``: a firewall dropped the probe or answered with an ICMP error: not open.
- ``unfiltered`` (ACK, Window): the probe reached the stack: open or closed, unknown. A
  firewalled port that is unfiltered is not firewalled; whether it is open is *unconfirmed*.
- ``open|filtered`` (UDP silence; FIN, NULL, Xmas, Maimon): no answer at all. That is what a
  dropping firewall gives, so a firewalled port passes; but a silent open service looks the
  same, so a denied or expected port is *unconfirmed* (scan it with a technique that can tell:
  -sS/-sT for TCP; for UDP a service that answers nmap's payloads shows open).
- ``closed|filtered`` (nmap's idle scan): closed or filtered: not open, so a denied port passes
  and an expected one is missing; a firewalled one is unconfirmed (the stack may have answered).

Ports the policy does not name (unlisted) or only allows are reported only when proven open:
an unlisted ``open|filtered`` port is not a finding (every dropped port would be one).

With several techniques per cell, each technique's state is looked up and the worst finding
kept. A baseline adds ``newly-open`` / ``newly-closed`` where the policy has no finding; it is
compared only on cells both scans covered and whose states say open or not open in both.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import NamedTuple

from twinscan.audit.policy import Decision, Policy, PolicyRule, Role, decide
from twinscan.core.vocab import PortState, Proto

S = PortState


class Kind(StrEnum):
    """A finding, declared worst first (the order of the report)."""

    DENIED_OPEN = "denied-open"
    NOT_FIREWALLED = "not-firewalled"
    UNEXPECTED_OPEN = "unexpected-open"
    MISSING_EXPECTED = "missing-expected"
    UNCONFIRMED = "unconfirmed"
    NEWLY_OPEN = "newly-open"
    NEWLY_CLOSED = "newly-closed"

    @property
    def severity(self) -> int:
        """0 is the worst."""
        return _SEVERITY[self]


_SEVERITY = {kind: i for i, kind in enumerate(Kind)}

K = Kind
_: Kind | None = None
#: (state, role) -> finding, every state for every role (the whole policy in one table).
TABLE: Mapping[tuple[PortState, Role], Kind | None] = {
    # state              firewalled            deny                  expect                  allow  unlisted
    **dict(zip([(S.OPEN, r) for r in Role],
               [K.NOT_FIREWALLED,      K.DENIED_OPEN,        _,                      _,     K.UNEXPECTED_OPEN], strict=True)),
    **dict(zip([(S.CLOSED, r) for r in Role],
               [K.NOT_FIREWALLED,      _,                    K.MISSING_EXPECTED,     _,     _], strict=True)),
    **dict(zip([(S.FILTERED, r) for r in Role],
               [_,                     _,                    K.MISSING_EXPECTED,     _,     _], strict=True)),
    **dict(zip([(S.UNFILTERED, r) for r in Role],
               [K.NOT_FIREWALLED,      K.UNCONFIRMED,        K.UNCONFIRMED,          _,     _], strict=True)),
    **dict(zip([(S.OPEN_FILTERED, r) for r in Role],
               [_,                     K.UNCONFIRMED,        K.UNCONFIRMED,          _,     _], strict=True)),
    **dict(zip([(S.CLOSED_FILTERED, r) for r in Role],
               [K.UNCONFIRMED,         _,                    K.MISSING_EXPECTED,     _,     _], strict=True)),
}  # fmt: skip


def classify(state: PortState, role: Role) -> Kind | None:
    return TABLE[(state, role)]


class Openness(StrEnum):
    """What a state says about "is it open" (for the baseline)."""

    OPEN = "open"
    NOT_OPEN = "not open"
    UNKNOWN = "unknown"


OPENNESS: Mapping[PortState, Openness] = {
    S.OPEN: Openness.OPEN,
    S.CLOSED: Openness.NOT_OPEN,
    S.FILTERED: Openness.NOT_OPEN,
    S.CLOSED_FILTERED: Openness.NOT_OPEN,
    S.UNFILTERED: Openness.UNKNOWN,
    S.OPEN_FILTERED: Openness.UNKNOWN,
}

CellKey = tuple[str, Proto, int]


class Cell(NamedTuple):
    """One port as one technique saw it (a named tuple: an audit makes one per scanned port)."""

    host: str
    proto: Proto
    port: int
    technique: str
    state: PortState
    reason: str

    @property
    def key(self) -> CellKey:
        return (self.host, self.proto, self.port)


def openness(states: Iterable[PortState]) -> Openness:
    """Open if any technique saw it open; not open if one proved it and none saw it open."""
    seen = {OPENNESS[s] for s in states}
    if Openness.OPEN in seen:
        return Openness.OPEN
    if Openness.NOT_OPEN in seen:
        return Openness.NOT_OPEN
    return Openness.UNKNOWN


@dataclasses.dataclass(frozen=True, slots=True)
class Finding:
    cell: Cell
    kind: Kind
    role: Role
    rule: PolicyRule | None
    #: The baseline's state (newly-open / newly-closed), e.g. ``closed``.
    baseline_state: str | None = None

    @property
    def rule_label(self) -> str:
        return self.rule.label if self.rule is not None else "no rule covers this host"


@dataclasses.dataclass(frozen=True, slots=True)
class BaselineStats:
    compared: int  # cells in both scans, decided in both
    only_current: int  # scanned now, not in the baseline
    only_baseline: int  # in the baseline, not scanned now
    undecided: int  # in both, but a state that does not say open or not (open|filtered, ...)

    @property
    def not_compared(self) -> int:
        return self.only_current + self.only_baseline + self.undecided


@dataclasses.dataclass(frozen=True, slots=True)
class Audit:
    findings: tuple[Finding, ...]  # worst first, then host, proto, port
    cells: int  # (host, proto, port) cells scanned
    #: Cells the policy names as deny/expect/firewalled that no technique scanned.
    not_checked: tuple[CellKey, ...] = ()
    baseline: BaselineStats | None = None

    @property
    def compliant(self) -> bool:
        return not self.findings

    def counts(self) -> dict[Kind, int]:
        out = dict.fromkeys(Kind, 0)
        for f in self.findings:
            out[f.kind] += 1
        return out


def audit(
    cells: Iterable[Cell],
    policy: Policy,
    *,
    hosts: Sequence[str] = (),
    baseline: Iterable[tuple[CellKey, PortState]] | None = None,
) -> Audit:
    """Every finding of ``cells`` under ``policy`` (and ``baseline``), one per cell.

    ``hosts`` are the scanned targets: a port of theirs the policy denies, expects or wants
    firewalled that no technique scanned is *not checked* (listed, not a finding).
    """
    keep_cells = baseline is not None
    by_cell: dict[CellKey, list[Cell]] = {}  # only for a baseline
    keys: set[CellKey] = set()
    rules_of: dict[str, tuple[PolicyRule, ...]] = {}
    named_of: dict[str, set[tuple[Proto, int]]] = {}
    unlisted_of: dict[str, Decision] = {}
    worst: dict[CellKey, tuple[Kind, Cell, Decision]] = {}
    for cell in cells:
        host, proto, port = cell.host, cell.proto, cell.port
        key = (host, proto, port)
        keys.add(key)
        if keep_cells:
            by_cell.setdefault(key, []).append(cell)
        if host not in rules_of:
            covering = rules_of[host] = policy.rules_for(host)
            named_of[host] = {k for r in covering for k in r.ports}
            unlisted_of[host] = Decision(Role.UNLISTED, covering[0] if covering else None)
        if (proto, port) in named_of[host]:
            decision = decide((proto, port), rules_of[host])
        else:
            decision = unlisted_of[host]
        kind = TABLE[(cell.state, decision.role)]
        if kind is not None:
            before = worst.get(key)
            if before is None or kind.severity < before[0].severity:
                worst[key] = (kind, cell, decision)
    found = {
        key: Finding(cell, kind, decision.role, decision.rule)
        for key, (kind, cell, decision) in worst.items()
    }
    stats = None
    if baseline is not None:
        stats = _compare_baseline(by_cell, baseline, policy, rules_of, found)
    not_checked = _not_checked(policy, hosts, keys)
    return Audit(
        findings=tuple(sorted(found.values(), key=finding_order)),
        cells=len(keys),
        not_checked=not_checked,
        baseline=stats,
    )


def _compare_baseline(
    by_cell: Mapping[CellKey, list[Cell]],
    baseline: Iterable[tuple[CellKey, PortState]],
    policy: Policy,
    rules_of: dict[str, tuple[PolicyRule, ...]],
    found: dict[CellKey, Finding],
) -> BaselineStats:
    before: dict[CellKey, list[PortState]] = {}
    for key, state in baseline:
        before.setdefault(key, []).append(state)
    compared = undecided = only_baseline = 0
    for key, states in before.items():
        seen = by_cell.get(key)
        if seen is None:
            only_baseline += 1
            continue
        then, now = openness(states), openness(c.state for c in seen)
        if Openness.UNKNOWN in (then, now):
            undecided += 1
            continue
        compared += 1
        if then is now or key in found:
            continue  # unchanged, or the policy already says what is wrong with it
        kind = Kind.NEWLY_OPEN if now is Openness.OPEN else Kind.NEWLY_CLOSED
        wanted = {Openness.OPEN: PortState.OPEN}
        cell = _pick(seen, wanted.get(now))
        host, proto, port = key
        if host not in rules_of:
            rules_of[host] = policy.rules_for(host)
        decision = decide((proto, port), rules_of[host])
        then_state = "open" if then is Openness.OPEN else _not_open_state(states)
        found[key] = Finding(cell, kind, decision.role, decision.rule, baseline_state=then_state)
    only_current = sum(1 for key in by_cell if key not in before)
    return BaselineStats(compared, only_current, only_baseline, undecided)


def _pick(cells: Sequence[Cell], state: PortState | None) -> Cell:
    """The cell that shows ``state`` (open), else the first decided one."""
    for cell in cells:
        if state is not None and cell.state is state:
            return cell
    for cell in cells:
        if OPENNESS[cell.state] is not Openness.UNKNOWN:
            return cell
    return cells[0]


def _not_open_state(states: Sequence[PortState]) -> str:
    for s in states:
        if OPENNESS[s] is Openness.NOT_OPEN:
            return s.value
    return states[0].value


def _not_checked(
    policy: Policy,
    hosts: Sequence[str],
    keys: set[CellKey],
) -> tuple[CellKey, ...]:
    out: list[CellKey] = []
    for host in hosts:
        for rule in policy.rules_for(host):
            for (proto, port), role in rule.ports.items():
                if role is Role.ALLOW:
                    continue
                key = (host, proto, port)
                if key in keys:
                    continue
                out.append(key)
    return tuple(sorted(set(out), key=lambda k: (host_key(k[0]), k[1].value, k[2])))


def host_key(host: str) -> tuple[int, int, str]:
    from twinscan.core.schema import host_sort_key

    return host_sort_key(host)


def finding_order(f: Finding) -> tuple[int, tuple[int, int, str], str, int]:
    return (f.kind.severity, host_key(f.cell.host), f.cell.proto.value, f.cell.port)


def by_host(findings: Iterable[Finding]) -> list[tuple[str, list[Finding]]]:
    """Findings grouped by host, the worst host first (its worst finding, then how many)."""
    groups: dict[str, list[Finding]] = {}
    for f in findings:
        groups.setdefault(f.cell.host, []).append(f)
    for items in groups.values():
        items.sort(key=lambda f: (f.kind.severity, f.cell.proto.value, f.cell.port))
    return sorted(
        groups.items(),
        key=lambda kv: (min(f.kind.severity for f in kv[1]), -len(kv[1]), host_key(kv[0])),
    )
