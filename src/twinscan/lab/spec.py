"""The lab's declarative spec: a TOML file parsed into frozen dataclasses (no I/O but ``load_spec``).

An invalid spec raises ``SpecError`` naming the dotted field and its line in the TOML text.
``tomllib`` reports line numbers only for syntax errors, so for a bad *value* the line is found by
scanning the text for the key (good enough for hand-written specs).

Over 400 lines: one dataclass per spec section with its validation beside it, so an error
message and the field it names stay together; nothing here does I/O but ``load_spec``.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from enum import StrEnum
from pathlib import Path
from typing import Any

from twinscan.core.errors import InputFileError
from twinscan.core.vocab import Proto
from twinscan.request.ports import parse_port_list

#: Every lab address must live here (network safety: nothing outside the benchmark block).
LAB_SUPERNET = ipaddress.IPv4Network("198.18.0.0/16")
#: Every lab IPv6 address lives in the documentation prefix (RFC 3849), as the guard expects.
LAB_SUPERNET6 = ipaddress.IPv6Network("2001:db8::/32")

_NAME_RE = re.compile(r"^[a-z][a-z0-9]{0,11}$")


class Action(StrEnum):
    """A firewall verdict for matching inbound packets (nftables, in the host's namespace)."""

    DROP = "drop"
    TCP_RESET = "tcp-reset"
    PORT_UNREACHABLE = "port-unreachable"
    HOST_PROHIBITED = "host-prohibited"
    ADMIN_PROHIBITED = "admin-prohibited"
    NET_UNREACHABLE = "net-unreachable"


class Conntrack(StrEnum):
    """Stateful rules (conntrack) evaluated before the per-port rules."""

    #: ``ct state new tcp flags & (fin|syn|rst|ack) != syn drop``: a lone ACK is NEW (tcp_loose).
    DROP_NEW_NON_SYN = "drop-new-non-syn"
    #: ``ct state invalid drop``: FIN, NULL, Xmas and FIN/ACK probes open no conntrack entry.
    DROP_INVALID = "drop-invalid"


class UdpKind(StrEnum):
    """What sits on a UDP port."""

    SILENT = "silent"  # a bound socket that never answers
    DNS = "dns"  # answers DNS queries (hand-rolled reply echoing the query id)
    NTP = "ntp"  # answers NTP client requests with a server (mode 4) packet
    ECHO = "echo"  # echoes every datagram


@dataclasses.dataclass(frozen=True, slots=True)
class Rule:
    proto: Proto
    ports: tuple[int, ...]
    action: Action

    def matches(self, proto: Proto, port: int) -> bool:
        return proto is self.proto and port in self.ports


@dataclasses.dataclass(frozen=True, slots=True)
class Host:
    name: str
    address: str
    #: No namespace behind the address: only a static neighbour entry, so nothing ever answers.
    silent: bool = False
    tcp: tuple[int, ...] = ()
    udp: tuple[tuple[int, UdpKind], ...] = ()
    #: Port of an anonymous FTP server that permits bounce (PORT to any address and port).
    ftp: int | None = None
    rules: tuple[Rule, ...] = ()
    #: Probability that an inbound packet is dropped (nft ``numgen random``).
    loss: float = 0.0
    conntrack: frozenset[Conntrack] = frozenset()
    #: Keep Linux's default ICMP error rate limiting (1/s per peer after a burst of 6).
    icmp_ratelimit: bool = False
    #: The host's IPv6 address in a dual-stack lab (``[lab] subnet6``): the same offset into
    #: subnet6 as ``address`` has in subnet (198.18.0.10 -> 2001:db8:18::a); None: IPv4 only.
    address6: str | None = None

    @property
    def tcp_listeners(self) -> frozenset[int]:
        return frozenset(self.tcp) | ({self.ftp} if self.ftp is not None else set())

    @property
    def udp_services(self) -> dict[int, UdpKind]:
        return dict(self.udp)

    def rule_for(self, proto: Proto, port: int) -> Rule | None:
        for rule in self.rules:
            if rule.matches(proto, port):
                return rule
        return None


@dataclasses.dataclass(frozen=True, slots=True)
class ScanPlan:
    """The port universe the truth table covers (and the tests and demo scan)."""

    tcp_ports: tuple[int, ...]
    udp_ports: tuple[int, ...]
    bounce_relay: str | None = None
    bounce_targets: tuple[str, ...] = ()
    bounce_ports: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True, slots=True)
class LabSpec:
    subnet: ipaddress.IPv4Network
    scanner: str
    hosts: tuple[Host, ...]
    scan: ScanPlan
    source: str = "<string>"
    #: Silent hosts are routed to this address: a namespace that drops every IP packet.
    sink: str = "198.18.0.254"
    #: Dual stack: the IPv6 /64 (inside 2001:db8::/32) and the scanner's and sink's addresses.
    subnet6: ipaddress.IPv6Network | None = None
    scanner6: str | None = None
    sink6: str | None = None

    def by_address(self, address: str) -> Host | None:
        """The host at ``address`` (IPv4 or IPv6), or None."""
        for host in self.hosts:
            if address in (host.address, host.address6):
                return host
        return None

    def host(self, name: str) -> Host:
        for host in self.hosts:
            if host.name == name:
                return host
        raise KeyError(name)

    @property
    def addresses(self) -> dict[str, str]:
        return {h.name: h.address for h in self.hosts}

    def tcp_universe(self) -> tuple[int, ...]:
        """``[scan] tcp_ports`` plus every TCP port the spec mentions anywhere."""
        ports = set(self.scan.tcp_ports)
        for h in self.hosts:
            ports |= h.tcp_listeners
            for r in h.rules:
                if r.proto is Proto.TCP:
                    ports.update(r.ports)
        return tuple(sorted(ports))

    def udp_universe(self) -> tuple[int, ...]:
        """``[scan] udp_ports`` plus every UDP port the spec mentions anywhere."""
        ports = set(self.scan.udp_ports)
        for h in self.hosts:
            ports.update(p for p, _ in h.udp)
            for r in h.rules:
                if r.proto is Proto.UDP:
                    ports.update(r.ports)
        return tuple(sorted(ports))


class SpecError(InputFileError):
    """A spec that does not parse or validate; names the field and its line."""

    def __init__(self, source: str, field: str, line: int | None, problem: str) -> None:
        where = f"line {line}: " if line is not None else ""
        super().__init__(source, f"{where}{field}: {problem}")
        self.field = field
        self.line = line


# --- loading ------------------------------------------------------------------------------


def default_spec_path() -> Path:
    """The default spec: ``$TWINSCAN_LAB_SPEC``, else ``fixtures/labs/default.toml`` of the checkout.

    twinscan is installed editable from its checkout (``make setup``), so the fixture is found
    relative to this file: ``src/twinscan/lab/spec.py`` -> ``<repo>/fixtures/labs/default.toml``.
    """
    env = os.environ.get("TWINSCAN_LAB_SPEC")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[3] / "fixtures" / "labs" / "default.toml"


def load_spec(path: str | os.PathLike[str] | None = None) -> LabSpec:
    p = Path(path) if path is not None else default_spec_path()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        hint = "" if path is not None else " (set TWINSCAN_LAB_SPEC or pass --spec)"
        raise InputFileError(str(p), f"no such lab spec{hint}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputFileError(str(p), f"cannot read lab spec: {exc}") from None
    return parse_spec(text, source=str(p))


def parse_spec(text: str, *, source: str = "<string>") -> LabSpec:
    """Parse and validate a spec's TOML text (pure)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        m = re.search(r"at line (\d+)", str(exc))
        raise SpecError(source, "toml", int(m.group(1)) if m else None, str(exc)) from None
    return _Parser(text, source).spec(data)


# --- validation ---------------------------------------------------------------------------

Path_ = tuple[str | int, ...]


def _dotted(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Parser:
    def __init__(self, text: str, source: str) -> None:
        self.text = text
        self.source = source

    def fail(self, path: Path_, problem: str) -> SpecError:
        return SpecError(self.source, _dotted(path), locate(self.text, path), problem)

    def table(self, value: object, path: Path_, allowed: Sequence[str]) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise self.fail(path, "must be a table")
        for key in value:
            if key not in allowed:
                raise self.fail(path + (key,), f"unknown field (allowed: {', '.join(allowed)})")
        return value

    def string(self, value: object, path: Path_) -> str:
        if not isinstance(value, str):
            raise self.fail(path, "must be a string")
        return value

    def boolean(self, value: object, path: Path_) -> bool:
        if not isinstance(value, bool):
            raise self.fail(path, "must be true or false")
        return value

    def port(self, value: object, path: Path_) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
            raise self.fail(path, f"not a port number 1-65535: {value!r}")
        return value

    def port_list(self, value: object, path: Path_) -> tuple[int, ...]:
        """A port, a list of ports, or an nmap-style range string ``"1-100,443"``."""
        if isinstance(value, str):
            try:
                ports = parse_port_list(value)
            except ValueError as exc:
                raise self.fail(path, str(exc)) from None
            if 0 in ports:
                raise self.fail(path, "port 0 is not scannable")
            return tuple(ports)
        if isinstance(value, int) and not isinstance(value, bool):
            return (self.port(value, path),)
        if isinstance(value, list):
            return tuple(sorted({self.port(v, path + (i,)) for i, v in enumerate(value)}))
        raise self.fail(path, "must be a port, a list of ports or a range string like '1-100'")

    def enum(self, cls: type[StrEnum] | type[Proto], value: object, path: Path_) -> Any:
        try:
            if not isinstance(value, str):
                raise ValueError(value)
            return cls(value)
        except ValueError:
            choices = ", ".join(m.value for m in cls)
            raise self.fail(path, f"unknown value {value!r} (expected one of: {choices})") from None

    def address(self, value: object, path: Path_) -> ipaddress.IPv4Address:
        try:
            addr = ipaddress.IPv4Address(self.string(value, path))
        except ipaddress.AddressValueError:
            raise self.fail(path, f"not an IPv4 address: {value!r}") from None
        return addr

    # --- sections ---

    def spec(self, data: Mapping[str, Any]) -> LabSpec:
        self.table(data, (), ("lab", "scan", "hosts"))
        lab = self.table(data.get("lab", {}), ("lab",), ("subnet", "scanner", "sink", "subnet6"))
        try:
            subnet = ipaddress.IPv4Network(
                self.string(lab.get("subnet", "198.18.0.0/24"), ("lab", "subnet"))
            )
        except ValueError as exc:
            raise self.fail(("lab", "subnet"), str(exc)) from None
        if not subnet.subnet_of(LAB_SUPERNET) or subnet.prefixlen > 30:
            raise self.fail(("lab", "subnet"), f"must be a /30 or larger inside {LAB_SUPERNET}")
        scanner = self.address(
            lab.get("scanner", str(subnet.network_address + 1)), ("lab", "scanner")
        )
        self.in_subnet(scanner, subnet, ("lab", "scanner"))
        sink = self.address(lab.get("sink", str(subnet.broadcast_address - 1)), ("lab", "sink"))
        self.in_subnet(sink, subnet, ("lab", "sink"))

        hosts_raw = data.get("hosts")
        if not isinstance(hosts_raw, dict) or not hosts_raw:
            raise self.fail(("hosts",), "the lab needs at least one [hosts.NAME] table")
        hosts = tuple(self.host(name, value, subnet) for name, value in hosts_raw.items())
        seen: dict[str, str] = {str(scanner): "lab.scanner"}
        if sink == scanner:
            raise self.fail(("lab", "sink"), f"{sink} is already lab.scanner")
        seen[str(sink)] = "lab.sink"
        for h in hosts:
            if h.address in seen:
                raise self.fail(
                    ("hosts", h.name, "address"), f"{h.address} already used by {seen[h.address]}"
                )
            seen[h.address] = f"hosts.{h.name}"
        scan = self.scan(data.get("scan", {}), {h.name: h for h in hosts})
        if "subnet6" not in lab:
            return LabSpec(subnet, str(scanner), hosts, scan, self.source, str(sink))
        try:
            subnet6 = ipaddress.IPv6Network(self.string(lab["subnet6"], ("lab", "subnet6")))
        except ValueError as exc:
            raise self.fail(("lab", "subnet6"), str(exc)) from None
        if not subnet6.subnet_of(LAB_SUPERNET6) or subnet6.prefixlen > 128 - (
            32 - subnet.prefixlen
        ):
            raise self.fail(
                ("lab", "subnet6"),
                f"must lie inside {LAB_SUPERNET6} and hold as many addresses as lab.subnet",
            )

        def six(addr: str) -> str:
            offset = int(ipaddress.IPv4Address(addr)) - int(subnet.network_address)
            return str(subnet6.network_address + offset)

        hosts = tuple(dataclasses.replace(h, address6=six(h.address)) for h in hosts)
        return LabSpec(
            subnet, str(scanner), hosts, scan, self.source, str(sink),
            subnet6, six(str(scanner)), six(str(sink)),
        )  # fmt: skip

    def in_subnet(
        self, addr: ipaddress.IPv4Address, subnet: ipaddress.IPv4Network, path: Path_
    ) -> None:
        if addr not in subnet or addr in (subnet.network_address, subnet.broadcast_address):
            raise self.fail(path, f"{addr} is not a usable address of lab.subnet {subnet}")

    def host(self, name: str, value: object, subnet: ipaddress.IPv4Network) -> Host:
        base: Path_ = ("hosts", name)
        if not _NAME_RE.match(name):
            raise self.fail(base, "host names are 1-12 of [a-z0-9], starting with a letter")
        fields = (
            "address", "silent", "tcp", "udp", "ftp", "rules", "loss", "conntrack",
            "icmp_ratelimit",
        )  # fmt: skip
        t = self.table(value, base, fields)
        if "address" not in t:
            raise self.fail(base, "missing field 'address'")
        addr = self.address(t["address"], base + ("address",))
        self.in_subnet(addr, subnet, base + ("address",))
        silent = self.boolean(t.get("silent", False), base + ("silent",))
        if silent:
            extra = [k for k in t if k not in ("address", "silent")]
            if extra:
                raise self.fail(base + (extra[0],), "a silent host has nothing behind it")
        tcp = self.port_list(t.get("tcp", []), base + ("tcp",))
        udp_raw = t.get("udp", {})
        if not isinstance(udp_raw, dict):
            raise self.fail(base + ("udp",), 'must be a table like { 53 = "dns" }')
        udp: list[tuple[int, UdpKind]] = []
        for key, kind in udp_raw.items():
            path = base + ("udp", key)
            if not key.isdigit():
                raise self.fail(path, f"not a port number: {key!r}")
            udp.append((self.port(int(key), path), self.enum(UdpKind, kind, path)))
        ftp = None
        if "ftp" in t:
            ftp = self.port(t["ftp"], base + ("ftp",))
            if ftp in tcp:
                raise self.fail(base + ("ftp",), f"port {ftp} is also listed in tcp")
        rules_raw = t.get("rules", [])
        if not isinstance(rules_raw, list):
            raise self.fail(base + ("rules",), "must be a list of rule tables")
        rules = tuple(self.rule(r, base + ("rules", i)) for i, r in enumerate(rules_raw))
        loss_raw = t.get("loss", 0.0)
        if isinstance(loss_raw, bool) or not isinstance(loss_raw, int | float):
            raise self.fail(base + ("loss",), "must be a number between 0 and 0.5")
        loss = float(loss_raw)
        if not 0.0 <= loss <= 0.5:
            raise self.fail(base + ("loss",), f"{loss} is outside 0-0.5")
        ct_raw = t.get("conntrack", [])
        if not isinstance(ct_raw, list):
            raise self.fail(base + ("conntrack",), "must be a list")
        conntrack = frozenset(
            self.enum(Conntrack, c, base + ("conntrack", i)) for i, c in enumerate(ct_raw)
        )
        rl = self.boolean(t.get("icmp_ratelimit", False), base + ("icmp_ratelimit",))
        return Host(
            name=name,
            address=str(addr),
            silent=silent,
            tcp=tcp,
            udp=tuple(sorted(udp)),
            ftp=ftp,
            rules=rules,
            loss=loss,
            conntrack=conntrack,
            icmp_ratelimit=rl,
        )

    def rule(self, value: object, path: Path_) -> Rule:
        t = self.table(value, path, ("proto", "ports", "action"))
        for key in ("proto", "ports", "action"):
            if key not in t:
                raise self.fail(path, f"missing field {key!r}")
        proto = self.enum(Proto, t["proto"], path + ("proto",))
        ports = self.port_list(t["ports"], path + ("ports",))
        action = self.enum(Action, t["action"], path + ("action",))
        if action is Action.TCP_RESET and proto is not Proto.TCP:
            raise self.fail(path + ("action",), "tcp-reset needs proto = 'tcp'")
        return Rule(proto, ports, action)

    def scan(self, value: object, hosts: Mapping[str, Host]) -> ScanPlan:
        base: Path_ = ("scan",)
        fields = ("tcp_ports", "udp_ports", "bounce_relay", "bounce_targets", "bounce_ports")
        t = self.table(value, base, fields)
        tcp = self.port_list(t.get("tcp_ports", "1-1024"), base + ("tcp_ports",))
        udp = self.port_list(t.get("udp_ports", []), base + ("udp_ports",))
        relay = t.get("bounce_relay")
        targets: tuple[str, ...] = ()
        bports: tuple[int, ...] = ()
        if relay is not None:
            relay = self.string(relay, base + ("bounce_relay",))
            if relay not in hosts or hosts[relay].ftp is None:
                raise self.fail(base + ("bounce_relay",), f"{relay!r} is not a host with ftp")
            raw = t.get("bounce_targets", [])
            if not isinstance(raw, list):
                raise self.fail(base + ("bounce_targets",), "must be a list of host names")
            for i, name in enumerate(raw):
                if name not in hosts:
                    raise self.fail(base + ("bounce_targets", i), f"no host named {name!r}")
            targets = tuple(raw)
            bports = self.port_list(t.get("bounce_ports", []), base + ("bounce_ports",))
        elif "bounce_targets" in t or "bounce_ports" in t:
            raise self.fail(base + ("bounce_relay",), "bounce_targets/ports need bounce_relay")
        return ScanPlan(tcp, udp, relay, targets, bports)


# --- finding a field's line ----------------------------------------------------------------

_HEADER_RE = re.compile(r"^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?\s*(#.*)?$")


def _header(line: str) -> tuple[str, bool] | None:
    m = _HEADER_RE.match(line)
    if not m:
        return None
    name = ".".join(p.strip().strip("\"'") for p in m.group(2).split("."))
    return name, m.group(1) == "[["


def _key_re(key: str) -> re.Pattern[str]:
    k = re.escape(key)
    return re.compile(rf"(?:^|[\s{{,.])[\"']?{k}[\"']?\s*=")


def locate(text: str, path: Path_) -> int | None:
    """The 1-based line that defines ``path`` (e.g. ``("hosts", "fw", "rules", 2, "action")``).

    Finds the deepest ``[table]`` header that is a prefix of the path, then each remaining key
    in order below it; an index ``i`` before a key picks the key's ``i+1``-th occurrence (inline
    arrays of tables written one per line). Returns the best line found, or None.
    """
    lines = text.splitlines()
    start = 0
    best: int | None = None
    consumed = 0
    for n in range(len(path), 0, -1):
        parts = path[:n]
        if not all(isinstance(p, str) for p in parts):
            continue
        name = ".".join(str(p) for p in parts)
        hits = [i for i, line in enumerate(lines) if (h := _header(line)) and h[0] == name]
        if not hits:
            continue
        idx = 0
        if n < len(path) and isinstance(path[n], int) and _header(lines[hits[0]]) == (name, True):
            idx = int(path[n])
            n += 1
        if idx < len(hits):
            best = start = hits[idx]
            consumed = n
            break
    rest = path[consumed:]
    for i, part in enumerate(rest):
        if isinstance(part, int):
            continue
        occurrence = rest[i - 1] if i > 0 and isinstance(rest[i - 1], int) else 0
        pattern = _key_re(part)
        found = None
        seen = 0
        for j in range(start, len(lines)):
            if j > start and best is not None and _header(lines[j]) and consumed and i == 0:
                break  # left the table
            if pattern.search(lines[j].split("#", 1)[0]):
                if seen == occurrence:
                    found = j
                    break
                seen += 1
        if found is None:
            break
        best = start = found
    return best + 1 if best is not None else None
