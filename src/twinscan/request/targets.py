"""Target specifications as nmap takes them: addresses, CIDR, octet ranges, hostnames, files.

``expand_targets`` is pure apart from hostname resolution, which goes through the injected
``resolve`` callable (``socket.getaddrinfo`` by default).
"""

from __future__ import annotations

import ipaddress
import re
import socket
import sys
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from twinscan.core.errors import InputFileError, TargetError

#: Refuse to expand more hosts than this in one scan (a /16).
MAX_HOSTS = 65536

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str], list[str]]


def _default_resolve(name: str) -> list[str]:
    try:
        infos = socket.getaddrinfo(name, None, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise TargetError(f"cannot resolve {name!r}: {exc.strerror}") from None
    except UnicodeError:
        # The IDNA codec refuses empty labels (``bad..host``) and labels over 63 characters.
        raise TargetError(f"not a valid host name: {name!r}") from None
    return [str(info[4][0]) for info in infos]


#: A DNS name: labels of 1-63 letters, digits, hyphens or underscores, 253 characters at most.
_LABEL = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)\Z")


def _check_hostname(spec: str) -> None:
    name = spec[:-1] if spec.endswith(".") else spec
    if len(name) > 253 or not all(_LABEL.match(label) for label in name.split(".")):
        raise TargetError(
            f"not a target: {spec!r} (not an address, CIDR block, range or host name)"
        )


def _octet_values(part: str, spec: str) -> list[int]:
    values: list[int] = []
    if part == "*":  # nmap's wildcard octet: 0-255
        return list(range(256))
    for item in part.split(","):
        lo_s, sep, hi_s = item.partition("-")
        if sep:
            lo = int(lo_s) if lo_s else 0
            hi = int(hi_s) if hi_s else 255
        else:
            lo = hi = int(lo_s)
        if not (0 <= lo <= hi <= 255):
            raise TargetError(f"bad octet range {item!r} in {spec!r}")
        values.extend(range(lo, hi + 1))
    return values


def _expand_octets(spec: str) -> Iterator[Address]:
    parts = spec.split(".")
    if len(parts) != 4 or not all(p == "*" or (p and set(p) <= set("0123456789,-")) for p in parts):
        raise TargetError(f"not a target: {spec!r}")
    try:
        octets = [_octet_values(p, spec) for p in parts]
    except ValueError:
        raise TargetError(f"not a target: {spec!r}") from None
    total = 1
    for o in octets:
        total *= len(o)
    if total > MAX_HOSTS:
        raise TargetError(f"{spec!r} expands to {total} hosts (limit {MAX_HOSTS})")
    for a in octets[0]:
        for b in octets[1]:
            for c in octets[2]:
                for d in octets[3]:
                    yield ipaddress.IPv4Address(f"{a}.{b}.{c}.{d}")


def _expand_one(spec: str, resolve: Resolver, family: int | None = None) -> Iterator[Address]:
    for addr in _expand_spec(spec, resolve, family):
        if family is not None and addr.version != family:
            raise TargetError(f"{spec!r} is not an IPv{family} target (-{family} was given)")
        yield addr


def _expand_spec(spec: str, resolve: Resolver, family: int | None) -> Iterator[Address]:
    spec = spec.strip()
    if not spec:
        return
    try:
        yield ipaddress.ip_address(spec)
        return
    except ValueError:
        pass
    if "/" in spec:
        try:
            net = ipaddress.ip_network(spec, strict=False)
        except ValueError:
            raise TargetError(f"bad CIDR block {spec!r}") from None
        if net.num_addresses > MAX_HOSTS:
            if net.version == 6:
                raise TargetError(
                    f"{spec!r} has 2**{128 - net.prefixlen} addresses: an IPv6 prefix cannot be "
                    f"swept (limit {MAX_HOSTS} addresses, a /{128 - (MAX_HOSTS.bit_length() - 1)} "
                    "or longer); list the hosts' addresses or resolve their names instead"
                )
            raise TargetError(f"{spec!r} has {net.num_addresses} addresses (limit {MAX_HOSTS})")
        # nmap scans every address of the block, network and broadcast included.
        yield from net
        return
    if ":" in spec:
        # nmap takes no octet (or any other) ranges for IPv6: a prefix or single addresses.
        raise TargetError(
            f"not an IPv6 target: {spec!r} (IPv6 takes addresses and prefixes such as "
            "2001:db8:18::/120; ranges are not accepted, as in nmap)"
        )
    if (spec[0].isdigit() or spec[0] == "*") and set(spec) <= set("0123456789.,-*"):
        yield from _expand_octets(spec)
        return
    _check_hostname(spec)
    addrs = [ipaddress.ip_address(a.split("%", 1)[0]) for a in resolve(spec)]
    # nmap takes the first address a name resolves to (no --resolve-all), of the scan's
    # family: IPv4 unless -6 was given.
    wanted = [a for a in addrs if a.version == (family or 4)]
    if not wanted:
        kind = f" to an IPv{family or 4} address" if addrs else ""
        raise TargetError(f"cannot resolve {spec!r}{kind}")
    yield wanted[0]


def read_target_file(path: str) -> list[str]:
    """``-iL``: whitespace-separated targets, ``#`` starts a comment; ``-`` reads stdin."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise InputFileError(path, exc.strerror or str(exc)) from None
    if b"\0" in data:
        raise InputFileError(path, "not a text file of targets (it holds NUL bytes)")
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        raise InputFileError(path, f"not UTF-8 text (byte {exc.start})") from None
    out: list[str] = []
    for line in text.splitlines():
        out.extend(line.split("#", 1)[0].split())
    return out


def expand_targets(
    specs: Iterable[str],
    *,
    exclude: Iterable[str] = (),
    resolve: Resolver = _default_resolve,
    family: int | None = None,
) -> list[str]:
    """Every address the specs name, in order, without duplicates or excluded addresses."""
    excluded: set[Address] = set()
    for item in dict.fromkeys(i for spec in exclude for i in spec.split(",")):
        excluded.update(_expand_spec(item, resolve, family))
    seen: set[Address] = set()
    out: list[str] = []
    done: set[str] = set()  # a spec given again adds nothing: don't expand it again
    for spec in specs:
        if spec in done:
            continue
        done.add(spec)
        for addr in _expand_one(spec, resolve, family):
            if addr in seen or addr in excluded:
                continue
            seen.add(addr)
            out.append(str(addr))
            if len(out) > MAX_HOSTS:
                raise TargetError(f"more than {MAX_HOSTS} targets")
    if not out:
        raise TargetError("no targets to scan")
    return out
