"""Port lists: the one port-range parser, its formatter and nmap's service table.

Two grammars, one range parser (``_range``) and one error type (``PortSpecError``, a
``TargetError`` and a ``ValueError``):

- ``parse_ports`` reads ``-p`` as nmap takes it: ``22,80,1000-2000``; ``-`` alone or ``-p-``
  for 1-65535; open ends ``-1024`` and ``60000-``; ``T:`` and ``U:`` qualifiers that last until
  the next one (unqualified ports go to both lists); service names from nmap-services
  (``http``); and twinscan's ``well-known``, ``registered``, ``dynamic`` for IANA's ranges.
  Port 0 is scanned only when named explicitly, as in nmap.
- ``parse_port_list`` reads the plain lists inside files (lab specs, nmap XML's
  ``scaninfo@services`` and ``extrareasons@ports``): numbers and closed ranges only.

``format_port_list`` is the inverse of ``parse_port_list`` (shortest range list).
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import re
from collections.abc import Iterable, Iterator, Mapping
from functools import lru_cache
from pathlib import Path
from typing import NamedTuple, TypeVar, overload

from twinscan.core.errors import PortSpecError, TargetError
from twinscan.core.vocab import IanaRange, Proto

T = TypeVar("T")

NMAP_SERVICES_PATHS = (
    "/usr/share/nmap/nmap-services",
    "/usr/local/share/nmap/nmap-services",
)


@dataclasses.dataclass(frozen=True, slots=True)
class PortPlan:
    tcp: tuple[int, ...]
    udp: tuple[int, ...]

    def for_proto(self, proto: Proto) -> tuple[int, ...]:
        return self.tcp if proto is Proto.TCP else self.udp


class ServiceEntry(NamedTuple):
    name: str
    port: int
    proto: Proto
    frequency: float


@lru_cache(maxsize=4)
def load_services(path: str | None = None) -> tuple[ServiceEntry, ...]:
    """Entries of the installed nmap-services file (empty when nmap is not installed)."""
    candidates = [path] if path else list(NMAP_SERVICES_PATHS)
    for candidate in candidates:
        p = Path(candidate)
        if p.is_file():
            return tuple(_parse_services(p.read_text(errors="replace")))
    return ()


class ServiceNames(Mapping[tuple[int, str], str]):
    """``(port, proto) -> name`` from nmap-services, read lazily.

    Parsing all of nmap-services (27,000 lines) as ``load_services`` does costs ~80 ms: more
    than a whole 1000-port loopback scan. A report names only the ports it lists (a few, as a
    rule), so the first ``LAZY_LOOKUPS`` distinct lookups each search the file's bytes for the one line
    (~0.15 ms); the next one indexes the whole file with one regular expression (~25 ms).
    Either way a name is what ``load_services`` gives: a line counts when its first field is
    the name, its second ``port/proto`` and its third a number (the frequency); of two lines
    for one port the first counts (nmap ships none).
    """

    LAZY_LOOKUPS = 32

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._index: dict[tuple[int, str], str] | None = None
        #: the names searched for so far (a port listed on 16 hosts is one search)
        self._found: dict[tuple[int, str], str | None] = {}
        # the byte search finds the "name<TAB>port/proto<TAB>" form nmap ships; a file in
        # another layout is indexed whole at once
        head = data.split(b"\n", 50)[:50]  # (not splitlines: 27,000 lines for 50, ~2 ms)
        first = next((ln for ln in head if ln.strip() and not ln.startswith(b"#")), b"")
        if first and b"\t" not in first:
            self._index = self._parse_all()

    def _parse_all(self) -> dict[tuple[int, str], str]:
        out: dict[tuple[int, str], str] = {}
        for name, port, proto, freq in _SERVICE_LINE.findall(self._data):
            if _float(freq):
                out.setdefault((int(port), proto.decode()), name.decode(errors="replace"))
        return out

    def _find(self, port: int, proto: str) -> str | None:
        data, needle = self._data, b"\t%d/%s\t" % (port, proto.encode())
        found = data.find(needle)
        while found >= 0:
            start = data.rfind(b"\n", 0, found) + 1
            end = data.find(b"\n", found)
            line = data[start : end if end >= 0 else len(data)].decode(errors="replace")
            for entry in _parse_services(line):  # the one line, by load_services' own rules
                if entry.port == port and entry.proto.value == proto:
                    return entry.name
            found = data.find(needle, found + 1)
        return None

    @overload
    def get(self, key: tuple[int, str], /) -> str | None: ...
    @overload
    def get(self, key: tuple[int, str], /, default: str) -> str: ...
    @overload
    def get(self, key: tuple[int, str], /, default: T) -> str | T: ...

    def get(self, key: tuple[int, str], /, default: object = None) -> object:
        if self._index is None:
            if key in self._found:
                name = self._found[key]
                return default if name is None else name
            if len(self._found) >= self.LAZY_LOOKUPS:
                self._index = self._parse_all()
            else:
                name = self._found[key] = self._find(*key)
                return default if name is None else name
        return self._index.get(key, default)

    def __getitem__(self, key: tuple[int, str]) -> str:
        name = self.get(key)
        if name is None:
            raise KeyError(key)
        return name

    def _all(self) -> dict[tuple[int, str], str]:
        if self._index is None:
            self._index = self._parse_all()
        return self._index

    def __iter__(self) -> Iterator[tuple[int, str]]:
        return iter(self._all())

    def __len__(self) -> int:
        return len(self._all())


#: one nmap-services line: name, port, proto and the frequency field (comments skipped).
_SERVICE_LINE = re.compile(rb"^([^#\s]+)[ \t]+(\d+)/(tcp|udp)[ \t]+([^\s#]+)", re.M)


def _float(text: bytes) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=4)
def service_names(path: str | None = None) -> ServiceNames:
    """The installed nmap-services as a lazy ``ServiceNames`` (empty without nmap)."""
    candidates = [path] if path else list(NMAP_SERVICES_PATHS)
    for candidate in candidates:
        p = Path(candidate)
        if p.is_file():
            return ServiceNames(p.read_bytes())
    return ServiceNames(b"")


def _parse_services(text: str) -> Iterable[ServiceEntry]:
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) < 3 or "/" not in fields[1]:
            continue
        port_s, _, proto_s = fields[1].partition("/")
        if proto_s not in ("tcp", "udp") or not port_s.isdigit():
            continue
        try:
            freq = float(fields[2])
        except ValueError:
            continue
        yield ServiceEntry(fields[0], int(port_s), Proto(proto_s), freq)


def top_ports(n: int, proto: Proto, services: tuple[ServiceEntry, ...] | None = None) -> list[int]:
    """The ``n`` most frequently open ports of ``proto`` by nmap-services' frequency."""
    entries = load_services() if services is None else services
    if not entries:
        raise TargetError("--top-ports needs nmap's nmap-services file (apt-get install nmap)")
    ranked = sorted((e for e in entries if e.proto is proto), key=lambda e: (-e.frequency, e.port))
    seen: list[int] = []
    for e in ranked:
        if e.port not in seen:
            seen.append(e.port)
        if len(seen) == n:
            break
    return seen


def _number(text: str) -> bool:
    return text.isascii() and text.isdigit()


def _range(item: str, spec: str, *, open_ends: bool = True) -> range:
    """One ``LO-HI`` / ``PORT`` item; with ``open_ends``, also ``-HI``, ``LO-`` and ``-``."""
    lo_s, sep, hi_s = (s.strip() for s in item.partition("-"))
    lo_ok = _number(lo_s) or (open_ends and not lo_s)
    hi_ok = not sep or _number(hi_s) or (open_ends and not hi_s)
    if not (lo_ok and hi_ok):
        raise PortSpecError(f"bad port {item!r} in {spec!r}")
    lo = int(lo_s) if lo_s else 1
    hi = (int(hi_s) if hi_s else 65535) if sep else lo
    if not (0 <= lo <= 65535 and 0 <= hi <= 65535):
        raise PortSpecError(f"port out of range 0-65535: {item!r}")
    if hi < lo:
        raise PortSpecError(f"backwards port range {item!r}")
    return range(lo, hi + 1)


def _items(spec: str) -> Iterator[str]:
    for raw in spec.split(","):
        item = raw.strip()
        if item:
            yield item


def parse_port_list(text: str) -> list[int]:
    """A plain comma-separated list of ports and closed ranges as sorted unique ports.

    ``PortSpecError`` (a ``ValueError``) on anything else: names, qualifiers and open ranges
    belong to ``-p`` (``parse_ports``), not to the lists inside files.
    """
    return _expand([_range(item, text, open_ends=False) for item in _items(text)])


def _expand(ranges: Iterable[range], extra: Iterable[int] = ()) -> list[int]:
    """The sorted unique ports of ``ranges`` (merged first: a spec repeating ``1-65535`` a
    thousand times costs one pass over the ports, not a thousand) and ``extra``."""
    merged: list[list[int]] = []
    for r in sorted(((r.start, r.stop) for r in ranges if r), key=lambda t: t[0]):
        if merged and r[0] <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], r[1])
        else:
            merged.append([r[0], r[1]])
    # merged runs are sorted and disjoint: no set of 65536 ports to sort (-p-: 5.4 -> 1.3 ms)
    ports = list(itertools.chain.from_iterable(range(lo, stop) for lo, stop in merged))
    starts = [lo for lo, _ in merged]
    more = {p for p in extra if (i := bisect.bisect_right(starts, p) - 1) < 0 or p >= merged[i][1]}
    return sorted(itertools.chain(ports, more)) if more else ports


def format_port_list(ports: Iterable[int]) -> str:
    """The shortest range list for ``ports`` (inverse of ``parse_port_list``)."""
    unique = sorted(set(ports))
    runs: list[list[int]] = []
    if unique:
        _find_runs(unique, 0, len(unique), runs)
    return ",".join(_run(lo, hi) for lo, hi in runs)


def _find_runs(ports: list[int], lo: int, hi: int, runs: list[list[int]]) -> None:
    """Append the runs of consecutive numbers in ``ports[lo:hi]`` (sorted, unique) to ``runs``,
    joining one to the last when they touch. A slice whose ends are as far apart as its length
    is one run, so a -p- list (a run or a few) costs a few dozen steps, not 65535."""
    first, last = ports[lo], ports[hi - 1]
    if last - first == hi - 1 - lo:
        if runs and runs[-1][1] + 1 == first:
            runs[-1][1] = last
        else:
            runs.append([first, last])
        return
    mid = (lo + hi) // 2
    _find_runs(ports, lo, mid, runs)
    _find_runs(ports, mid, hi, runs)


def _run(lo: int, hi: int) -> str:
    return str(lo) if lo == hi else f"{lo}-{hi}"


def _by_name(name: str, protos: tuple[Proto, ...]) -> dict[Proto, list[int]]:
    out: dict[Proto, list[int]] = {p: [] for p in protos}
    for e in load_services():
        if e.name == name and e.proto in out:
            out[e.proto].append(e.port)
    if not any(out.values()):
        raise PortSpecError(f"unknown port or service name {name!r}")
    return out


def parse_ports(spec: str, protos: tuple[Proto, ...] = (Proto.TCP, Proto.UDP)) -> PortPlan:
    """Parse ``-p`` into per-protocol sorted port lists."""
    ranges: dict[Proto, list[range]] = {Proto.TCP: [], Proto.UDP: []}
    named: dict[Proto, set[int]] = {Proto.TCP: set(), Proto.UDP: set()}
    iana = {r.value for r in IanaRange}
    names_seen: set[tuple[str, tuple[Proto, ...]]] = set()
    current: tuple[Proto, ...] = protos
    for item in _items(spec):
        upper = item[:2].upper()
        if upper in ("T:", "U:"):
            current = (Proto.TCP,) if upper == "T:" else (Proto.UDP,)
            item = item[2:].strip()
            if not item:
                continue
        lowered = item.lower()
        if lowered in iana:
            lo, hi = IanaRange(lowered).bounds
            for proto in current:
                ranges[proto].append(range(lo, hi + 1))
        elif item == "-" or item[0].isdigit() or item[0] == "-":
            ports = _range(item, spec)
            for proto in current:
                ranges[proto].append(ports)
        elif (lowered, current) not in names_seen:  # (a name repeated is looked up once)
            names_seen.add((lowered, current))
            for proto, ports_ in _by_name(lowered, current).items():
                named[proto].update(ports_)
    tcp = tuple(_expand(ranges[Proto.TCP], named[Proto.TCP]))
    same = ranges[Proto.UDP] == ranges[Proto.TCP] and named[Proto.UDP] == named[Proto.TCP]
    udp = tcp if same else tuple(_expand(ranges[Proto.UDP], named[Proto.UDP]))
    # ``-p-`` names every port of both protocols: one tuple, not two copies of 65535 ints
    # (every forked worker carries them)
    plan = PortPlan(tcp=tcp, udp=tcp if udp == tcp else udp)
    if not plan.tcp and not plan.udp:
        raise PortSpecError(f"no ports in {spec!r}")
    return plan


def default_ports(n: int = 1000) -> PortPlan:
    """nmap's default: the top 1000 ports per protocol (1-1024 without nmap-services)."""
    if not load_services():
        fallback = tuple(range(1, 1025))
        return PortPlan(fallback, fallback)
    return PortPlan(tuple(sorted(top_ports(n, Proto.TCP))), tuple(sorted(top_ports(n, Proto.UDP))))
