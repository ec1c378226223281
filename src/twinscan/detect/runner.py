"""Capture bytes in, one report row per (detector, scanner, alert) out.

``detect_bytes`` = ``read_capture`` -> ``fields.extract`` -> ``contacts.contacts`` -> every
selected detector fed the contacts in time order -> ``describe`` each alert: the scanner's
contacts in the alert's scope (its target or port, from the evidence's start to the alert)
name the technique (the most common one) and the tool (``fingerprints.tool``), list the
targets and ports, and count the probe packets sent before the alert.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np

from twinscan.core.errors import InputFileError
from twinscan.core.vocab import Technique
from twinscan.detect import fingerprints
from twinscan.detect.base import EVENT_COLUMNS, Alert, Detector, EventRow
from twinscan.detect.capture import NotACapture, read_capture
from twinscan.detect.contacts import TECH_CODE, TECHNIQUES, Contacts, contacts
from twinscan.detect.fields import PROTO_TCP, extract
from twinscan.detect.scanlogd import Scanlogd
from twinscan.detect.sfportscan import SfPortscan
from twinscan.detect.trw import Trw
from twinscan.detect.zeek import ZeekScan

#: Every detector by name, in report order; each call makes a fresh one.
DETECTORS: Final[dict[str, Callable[[], Detector]]] = {
    "sfportscan-low": lambda: SfPortscan("low"),
    "sfportscan-medium": lambda: SfPortscan("medium"),
    "sfportscan-high": lambda: SfPortscan("high"),
    "zeek-scan": ZeekScan,
    "trw": Trw,
    "scanlogd": Scanlogd,
}

ROW_COLUMNS: Final = (
    "capture",
    "detector",
    "alert",
    "scanner",
    "targets",
    "technique",
    "tool",
    "ports",
    "n_targets",
    "n_ports",
    "first_seen",
    "alert_at",
    "probes_before_alert",
)

#: Addresses listed in the ``targets`` cell before it says "+N more".
MAX_LISTED: Final = 8


@dataclasses.dataclass(frozen=True)
class Row:
    capture: str
    detector: str
    alert: str
    scanner: str
    targets: str
    technique: str
    tool: str
    ports: str
    n_targets: int
    n_ports: int
    first_seen: float
    alert_at: float
    probes_before_alert: int

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class Report:
    capture: str
    fmt: str
    packets: int
    ipv4: int
    contacts: int
    start: float | None
    rows: tuple[Row, ...]
    warnings: tuple[str, ...] = ()


def addr(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


def port_ranges(ports: Iterable[int]) -> str:
    """``[1, 2, 3, 7]`` -> ``"1-3,7"``."""
    out: list[str] = []
    run: list[int] = []
    for p in sorted(set(ports)):
        if run and p == run[-1] + 1:
            run.append(p)
            continue
        if run:
            out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
        run = [p]
    if run:
        out.append(f"{run[0]}-{run[-1]}" if len(run) > 1 else str(run[0]))
    return ",".join(out)


def events(c: Contacts) -> list[EventRow]:
    """The contacts as detector input, in time order (plain tuples in ``Event`` field order)."""
    return list(zip(*(getattr(c, n).tolist() for n in EVENT_COLUMNS), strict=True))


def run_detectors(evs: Sequence[EventRow], names: Sequence[str]) -> list[Alert]:
    """Feed every event to every named detector; their alerts, detector by detector."""
    out: list[Alert] = []
    for name in names:
        out.extend(DETECTORS[name]().feed(evs))
    return out


def technique_of(scope: Contacts, tool: str) -> Technique | None:
    """The most common technique of the scope; SYNs made by the OS (no raw-tool fingerprint,
    an OS option list) are a connect() scan even where no handshake completed."""
    if len(scope) == 0:
        return None
    codes = scope.technique
    if not tool:
        os_syn = fingerprints.os_made_syn(scope)
        codes = np.where(os_syn, TECH_CODE[Technique.CONNECT], codes)
    counts = Counter(codes.tolist())
    code, _n = max(counts.items(), key=lambda kv: (kv[1], -kv[0]))
    return TECHNIQUES[code]


def describe(alert: Alert, c: Contacts, by_src: dict[int, Any], capture: str) -> Row:
    idx = by_src.get(alert.scanner, np.zeros(0, dtype=np.int64))
    sub = c.take(idx)
    m = (sub.proto == alert.proto) & (sub.t_event >= alert.since) & (sub.t_event <= alert.at)
    if alert.target is not None:
        m &= sub.dst == alert.target
    if alert.port is not None:
        m &= sub.dport == alert.port
    scope = sub.take(np.flatnonzero(m))
    tool = fingerprints.tool(scope) if alert.proto == PROTO_TCP else ""
    tech = technique_of(scope, tool)
    targets = sorted(set(scope.dst.tolist()))
    listed = ",".join(addr(t) for t in targets[:MAX_LISTED])
    if len(targets) > MAX_LISTED:
        listed += f",+{len(targets) - MAX_LISTED} more"
    ports = scope.dport.tolist()
    return Row(
        capture=capture,
        detector=alert.detector,
        alert=alert.kind,
        scanner=addr(alert.scanner),
        targets=listed,
        technique=tech.value if tech else "",
        tool=tool,
        ports=port_ranges(ports),
        n_targets=len(targets),
        n_ports=len(set(ports)),
        first_seen=float(scope.t_probe.min()) if len(scope) else alert.since,
        alert_at=alert.at,
        probes_before_alert=int(scope.tries.sum()),
    )


def detect_bytes(data: bytes, capture: str = "-", names: Sequence[str] | None = None) -> Report:
    """Run the named detectors (default: all) over a capture held in ``data``."""
    names = list(DETECTORS) if names is None else list(names)
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ValueError(f"unknown detector(s): {', '.join(unknown)}")
    try:
        frames = read_capture(data)
    except NotACapture as exc:
        raise InputFileError(capture, str(exc)) from None
    pk = extract(frames)
    con = contacts(pk)
    alerts = run_detectors(events(con), names)
    order = np.argsort(con.src, kind="stable")
    srcs, first = np.unique(con.src[order], return_index=True)
    by_src = dict(zip(srcs.tolist(), np.split(order, first[1:]), strict=True)) if len(con) else {}
    rows = tuple(describe(a, con, by_src, capture) for a in alerts)
    return Report(
        capture=capture,
        fmt=frames.fmt,
        packets=len(frames),
        ipv4=len(pk),
        contacts=len(con),
        start=float(frames.ts.min()) if len(frames) else None,
        rows=rows,
        warnings=frames.warnings,
    )


def detect_file(path: str | Path, names: Sequence[str] | None = None) -> Report:
    """``detect_bytes`` over a file; unreadable files raise ``InputFileError``."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError as exc:
        raise InputFileError(str(path), exc.strerror or "cannot read") from None
    return detect_bytes(data, str(path), names)
