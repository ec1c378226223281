"""The audit policy: a TOML file of ``[[rule]]`` tables, parsed and validated (pure but ``load_policy``).

A rule::

    [[rule]]
    name = "web front"            # optional: how findings name the rule
    hosts = "198.18.0.10"         # what a target takes: address, CIDR, octet range, or a list
    allow = "T:22,80,443"         # may be open
    expect = "T:443,U:53"         # must be open
    deny = "T:23"                 # must not be open
    firewalled = "T:3389,5900"    # must be filtered (a firewall drops it or answers with ICMP)

Port lists take what ``-p`` takes (``T:``/``U:`` prefixes; unprefixed ports name TCP and UDP),
or a TOML integer or list. Every error is a ``PolicyError``: the file, the line and the problem.
``tomllib`` gives line numbers only for syntax errors, so the line of a key is found in the text.

Which rule decides a port: of the rules whose ``hosts`` hold the host and whose lists name the
(proto, port), the one with the fewest hosts (the most specific); among equally specific rules
the strictest role (firewalled > deny > expect > allow). A port no such rule names is
*unlisted* on a host some rule covers; a host no rule covers has every port unlisted.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

from twinscan.core.errors import InputFileError, TwinscanError
from twinscan.core.vocab import Proto

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class Role(StrEnum):
    """What a rule says about a port. Declared strictest first (ties between rules)."""

    FIREWALLED = "firewalled"
    DENY = "deny"
    EXPECT = "expect"
    ALLOW = "allow"
    #: Named by no rule (the host may still be covered by one).
    UNLISTED = "unlisted"


#: The list keys of a rule, in the order the docs give them.
LIST_KEYS: tuple[str, ...] = ("allow", "expect", "deny", "firewalled")
RULE_KEYS: frozenset[str] = frozenset({"name", "hosts", *LIST_KEYS})
_STRICTNESS = {role: i for i, role in enumerate(Role)}

#: Roles that may not share a port inside one rule: "may/must be open" against "must not".
_CONFLICTS = (
    ("allow", "deny"),
    ("allow", "firewalled"),
    ("expect", "deny"),
    ("expect", "firewalled"),
)

PortKey = tuple[Proto, int]


class PolicyError(InputFileError):
    """A policy that does not parse or validate: ``FILE: line N: problem``."""

    def __init__(self, source: str, line: int | None, problem: str) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(source, f"{where}{problem}")
        self.line = line


@dataclasses.dataclass(frozen=True, slots=True)
class HostSet:
    """The hosts of a rule: whole networks (CIDR, tested by membership) plus single addresses."""

    networks: tuple[Network, ...] = ()
    addresses: frozenset[Address] = frozenset()

    def __contains__(self, host: object) -> bool:
        try:
            ip = ipaddress.ip_address(str(host).split("%", 1)[0])
        except ValueError:
            return False
        return ip in self.addresses or any(ip in net for net in self.networks)

    @property
    def size(self) -> int:
        """How many addresses (specificity: a rule for fewer hosts is more specific)."""
        return len(self.addresses) + sum(net.num_addresses for net in self.networks)


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyRule:
    index: int  # 1-based, in file order
    line: int | None
    hosts: HostSet
    ports: Mapping[PortKey, Role]  # the (proto, port)s this rule names, with their role
    name: str | None = None

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        return f"rule {self.index}" + (f" (line {self.line})" if self.line else "")


@dataclasses.dataclass(frozen=True, slots=True)
class Decision:
    """A port's role on a host and the rule that gave it (None: no rule covers the host)."""

    role: Role
    rule: PolicyRule | None


@dataclasses.dataclass(frozen=True, slots=True)
class Policy:
    rules: tuple[PolicyRule, ...]
    source: str = "<string>"

    def rules_for(self, host: str) -> tuple[PolicyRule, ...]:
        """The rules covering ``host``, most specific first (then file order)."""
        return tuple(sorted((r for r in self.rules if host in r.hosts), key=_specificity))

    def decide(self, host: str, proto: Proto, port: int) -> Decision:
        return decide((proto, port), self.rules_for(host))

    def named_ports(self, proto: Proto | None = None) -> tuple[int, ...]:
        """Every port the policy names (of ``proto``, or of both), sorted."""
        found = {p for r in self.rules for (pr, p) in r.ports if proto is None or pr is proto}
        return tuple(sorted(found))


def _specificity(rule: PolicyRule) -> tuple[int, int]:
    return (rule.hosts.size, rule.index)


def decide(key: PortKey, covering: Iterable[PolicyRule]) -> Decision:
    """The role of ``key`` under ``covering`` (rules of one host, most specific first)."""
    covering = list(covering)
    naming = [r for r in covering if key in r.ports]
    if not naming:
        return Decision(Role.UNLISTED, covering[0] if covering else None)
    size = naming[0].hosts.size
    tied = [r for r in naming if r.hosts.size == size]
    best = min(tied, key=lambda r: (_STRICTNESS[r.ports[key]], r.index))
    return Decision(best.ports[key], best)


# --- parsing ----------------------------------------------------------------------------------


def load_policy(path: str | os.PathLike[str]) -> Policy:
    name = os.fspath(path)
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise PolicyError(name, None, "no such policy file") from None
    except IsADirectoryError:
        raise PolicyError(name, None, "is a directory, not a policy file") from None
    except OSError as exc:
        raise PolicyError(name, None, f"cannot read the policy: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise PolicyError(name, None, f"not UTF-8 text (byte {exc.start})") from None
    return parse_policy(text, source=name)


def parse_policy(text: str, *, source: str = "<string>") -> Policy:
    """Parse and validate a policy's TOML text (pure: host names are refused, not resolved)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"\(at line (\d+), column \d+\)", str(exc))
        problem = re.sub(r"\s*\(at line \d+, column \d+\)", "", str(exc))
        raise PolicyError(source, int(m.group(1)) if m else None, f"not TOML: {problem}") from None
    lines = _Lines(text)
    for key in data:
        if key != "rule":
            raise PolicyError(
                source, lines.top(key), f"unknown key {key!r} (a policy holds [[rule]] tables)"
            )
    raw_rules = data.get("rule")
    if raw_rules is None:
        raise PolicyError(source, None, "no [[rule]] tables: the policy says nothing")
    if not isinstance(raw_rules, list) or not all(isinstance(r, dict) for r in raw_rules):
        raise PolicyError(source, lines.top("rule"), "'rule' must be [[rule]] tables")
    rules = tuple(
        _parse_rule(raw, i, lines.rule_line(i), lines, source) for i, raw in enumerate(raw_rules)
    )
    return Policy(rules=rules, source=source)


def _parse_rule(
    raw: dict[str, Any], i: int, line: int | None, lines: _Lines, source: str
) -> PolicyRule:
    def fail(key: str | None, problem: str) -> PolicyError:
        at = lines.key_line(i, key) if key else line
        return PolicyError(source, at if at is not None else line, f"rule {i + 1}: {problem}")

    for key in raw:
        if key not in RULE_KEYS:
            known = ", ".join(sorted(RULE_KEYS))
            raise fail(key, f"unknown key {key!r} (a rule takes {known})")
    name = raw.get("name")
    if name is not None and (not isinstance(name, str) or not name.strip()):
        raise fail("name", "name must be a non-empty string")
    if "hosts" not in raw:
        raise fail(None, 'no hosts: say which hosts the rule is for (hosts = "...")')
    try:
        hosts = parse_hosts(raw["hosts"])
    except ValueError as exc:
        raise fail("hosts", f"bad hosts: {exc}") from None
    lists: dict[str, set[PortKey]] = {}
    for key in LIST_KEYS:
        if key in raw:
            try:
                lists[key] = parse_port_value(raw[key])
            except ValueError as exc:
                raise fail(key, f"bad port list in {key}: {exc}") from None
    if not lists:
        raise fail(None, f"no port list: give at least one of {', '.join(LIST_KEYS)}")
    for a, b in _CONFLICTS:
        both = lists.get(a, set()) & lists.get(b, set())
        if both:
            raise fail(b, f"{_describe(both)} is in both {a} and {b}")
    ports: dict[PortKey, Role] = {}
    for key in sorted(lists, key=lambda k: _STRICTNESS[Role(k)], reverse=True):
        for item in lists[key]:
            ports[item] = Role(key)  # stricter roles are written last and win
    return PolicyRule(
        index=i + 1,
        line=line,
        hosts=hosts,
        ports=ports,
        name=name.strip() if isinstance(name, str) else None,
    )


def _describe(keys: set[PortKey]) -> str:
    items = sorted(keys, key=lambda k: (k[0].value, k[1]))
    shown = ", ".join(f"{'T' if p is Proto.TCP else 'U'}:{n}" for p, n in items[:3])
    return shown + (f" (and {len(items) - 3} more)" if len(items) > 3 else "")


def parse_hosts(value: object) -> HostSet:
    """``hosts``: a target string (comma-separated allowed) or a list of them. ``ValueError``."""
    from twinscan.request.targets import expand_targets

    specs = _strings(value, "hosts")
    networks: list[Network] = []
    singles: list[str] = []
    for spec in specs:
        for item in spec.split(","):
            item = item.strip()
            if not item:
                continue
            if "/" in item:
                try:
                    networks.append(ipaddress.ip_network(item, strict=False))
                except ValueError:
                    raise ValueError(f"bad CIDR block {item!r}") from None
            else:
                singles.append(item)
    addresses: set[Address] = set()
    if singles:
        try:
            expanded = expand_targets(singles, resolve=_no_names)
        except TwinscanError as exc:
            raise ValueError(str(exc)) from None
        addresses = {ipaddress.ip_address(a) for a in expanded}
    if not networks and not addresses:
        raise ValueError("no hosts given")
    return HostSet(tuple(networks), frozenset(addresses))


def _no_names(name: str) -> list[str]:
    raise ValueError(
        f"{name!r} is a host name: a policy names addresses, CIDR blocks or ranges "
        "(a name can change what it points to)"
    )


def parse_port_value(value: object) -> set[PortKey]:
    """A port list as ``-p`` takes it (string), an integer, or a list of those. ``ValueError``."""
    from twinscan.request.ports import parse_ports

    text = ",".join(_strings(value, "port list", ints=True))
    if not text.strip(" ,"):
        return set()
    try:
        plan = parse_ports(text)
    except TwinscanError as exc:
        raise ValueError(str(exc)) from None
    return {(Proto.TCP, p) for p in plan.tcp} | {(Proto.UDP, p) for p in plan.udp}


def _strings(value: object, what: str, *, ints: bool = False) -> list[str]:
    items = value if isinstance(value, list) else [value]
    out: list[str] = []
    for item in items:
        if isinstance(item, str):
            out.append(item)
        elif ints and isinstance(item, int) and not isinstance(item, bool):
            out.append(str(item))
        else:
            kind = "strings or integers" if ints else "strings"
            raise ValueError(f"{what} must be {kind}, not {type(item).__name__} {item!r}")
    return out


# --- where keys are in the text -----------------------------------------------------------------

_HEADER = re.compile(r"^\s*\[\[?\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")
_RULE_HEADER = re.compile(r"^\s*\[\[\s*rule\s*\]\]\s*(#.*)?$")


def _key_re(key: str) -> re.Pattern[str]:
    k = re.escape(key)
    return re.compile(rf"^\s*(?:{k}|\"{k}\"|'{k}')\s*=")


class _Lines:
    """Line numbers of ``[[rule]]`` headers and of the keys under them (1-based)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.rule_starts: list[int] = []
        self.top_level_end = len(self.lines)
        self.spans: list[tuple[int, int]] = []  # per rule: [start, end) line indexes
        for n, line in enumerate(self.lines):
            if _HEADER.match(line) and not line.lstrip().startswith("#"):
                if self.top_level_end == len(self.lines):
                    self.top_level_end = n
                if self.spans:
                    self.spans[-1] = (self.spans[-1][0], n)
                if _RULE_HEADER.match(line):
                    self.rule_starts.append(n)
                    self.spans.append((n, len(self.lines)))

    def rule_line(self, i: int) -> int | None:
        return self.rule_starts[i] + 1 if i < len(self.rule_starts) else None

    def key_line(self, i: int, key: str | None) -> int | None:
        if key is None or i >= len(self.spans):
            return self.rule_line(i)
        start, end = self.spans[i]
        pattern = _key_re(key)
        for n in range(start + 1, end):
            if pattern.match(self.lines[n]):
                return n + 1
        return self.rule_line(i)

    def top(self, key: str) -> int | None:
        pattern = _key_re(key)
        header = re.compile(rf"^\s*\[\[?\s*{re.escape(key)}\s*(\]|\.)")
        for n, line in enumerate(self.lines):
            if (n < self.top_level_end and pattern.match(line)) or header.match(line):
                return n + 1
        return None
