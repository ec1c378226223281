"""Score an engine's verdicts against the truth of a workload (pure, apart from reading files).

The truth of a lab workload comes from the lab's truth function (``twinscan.lab.truth.expected``)
for exactly the hosts and ports scanned; the truth of a loopback workload is the set of ports
the harness listens on. Verdicts align on (host, port): a workload has one technique and so one
protocol. masscan reports open ports only, so it gets open-port recall and false opens but no
state accuracy.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.bench.plan import OutputKind, Workload
from twinscan.core.vocab import PortState, Proto

if TYPE_CHECKING:
    from twinscan.lab.spec import LabSpec


@dataclasses.dataclass(frozen=True, slots=True)
class Score:
    cells: int
    #: Truth cells the engine gave any verdict for.
    reported: int
    #: Truth cells whose verdict state equals the truth's.
    agree: int
    open_truth: int
    #: Truth-open cells the engine reported open.
    open_found: int
    #: Cells the engine reported open that are not open in truth (or not in the workload).
    false_open: int
    #: The engine reports open ports only (masscan): state accuracy does not apply.
    open_only: bool = False

    @property
    def accuracy(self) -> float | None:
        if self.open_only or self.cells == 0:
            return None
        return self.agree / self.cells

    @property
    def open_recall(self) -> float | None:
        return self.open_found / self.open_truth if self.open_truth else None


def loopback_truth(
    ports: int, listeners: Iterable[int], udp: Mapping[int, str] | None = None
) -> dict[int, str]:
    """Loopback truth: the harness's listeners are open, every other port closed. ``udp``
    (port -> ``UdpKind`` value) makes it a UDP truth: a listener that answers is open, a
    silent one open|filtered (nothing tells it from a filtered port), the rest closed."""
    if udp is not None:
        return {
            p: (
                PortState.CLOSED
                if p not in udp
                else PortState.OPEN_FILTERED
                if udp[p] == "silent"
                else PortState.OPEN
            ).value
            for p in range(1, ports + 1)
        }
    open_ports = set(listeners)
    return {
        p: (PortState.OPEN if p in open_ports else PortState.CLOSED).value
        for p in range(1, ports + 1)
    }


def truth_cells(
    workload: Workload,
    spec: LabSpec | None,
    *,
    loopback_listeners: Iterable[int] = (),
    loopback_udp: Mapping[int, str] | None = None,
    loopback_host: str = "127.0.0.1",
) -> dict[tuple[str, int], str]:
    """(host address, port) -> true state for every cell the workload scans."""
    if workload.loopback:
        udp = dict(loopback_udp or {}) if workload.technique.proto is Proto.UDP else None
        states = loopback_truth(workload.nports, loopback_listeners, udp)
        return {(loopback_host, p): s for p, s in states.items()}
    if spec is None:
        raise ValueError(f"{workload.name}: a lab workload needs the lab spec")
    from twinscan.lab.truth import expected

    cells: dict[tuple[str, int], str] = {}
    for name in workload.hosts:
        host = spec.host(name)
        memo: dict[object, str] = {}
        for port in range(1, workload.nports + 1):
            # Ports a host does not mention behave alike: classify one of them, reuse it.
            key: object = port if _mentioned(host, workload, port) else "plain"
            if key not in memo:
                memo[key] = expected(host, workload.technique, port).state.value
            cells[(host.address, port)] = memo[key]
    return cells


def _mentioned(host: object, workload: Workload, port: int) -> bool:
    from twinscan.lab.spec import Host

    assert isinstance(host, Host)
    proto = workload.technique.proto
    if host.rule_for(proto, port) is not None:
        return True
    if proto is Proto.UDP:
        return port in host.udp_services
    return port in host.tcp_listeners


def read_verdicts(kind: OutputKind, path: Path) -> dict[tuple[str, int], str]:
    """(host, port) -> state from an engine's output file."""
    if kind is OutputKind.MASSCAN_LIST:
        opened = parse_masscan_list(path.read_text(errors="replace"))
        return dict.fromkeys(opened, PortState.OPEN.value)
    from twinscan.formats.nmap_xml_read import read_nmap_xml_file

    frame = read_nmap_xml_file(path).frame  # nmap's -oX, and twinscan's
    return {
        (str(h), int(p)): str(s)
        for h, p, s in zip(frame["host"], frame["port"], frame["state"], strict=True)
    }


def parse_masscan_list(text: str) -> list[tuple[str, int]]:
    """masscan ``-oL`` lines ``open tcp PORT ADDR TIMESTAMP`` -> (addr, port), in file order.

    Comment lines (``#masscan``, ``# end``) and blank lines are skipped; a line that is not
    one of masscan's raises ``ValueError`` naming it.
    """
    out: list[tuple[str, int]] = []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 5 or fields[0] != "open" or fields[1] != "tcp":
            raise ValueError(f"masscan list line {number}: {line!r}")
        try:
            port = int(fields[2])
            addr = str(ipaddress.ip_address(fields[3]))
            int(fields[4])
        except ValueError:
            raise ValueError(f"masscan list line {number}: {line!r}") from None
        if not 0 <= port <= 65535:
            raise ValueError(f"masscan list line {number}: port {port} out of range")
        out.append((addr, port))
    return out


def score(
    found: Mapping[tuple[str, int], str],
    truth: Mapping[tuple[str, int], str],
    *,
    open_only: bool = False,
) -> Score:
    """Compare an engine's (host, port) -> state with the truth's."""
    opened = PortState.OPEN.value
    agree = reported = open_truth = open_found = 0
    for cell, state in truth.items():
        got = found.get(cell)
        if got is not None:
            reported += 1
            agree += got == state
        if state == opened:
            open_truth += 1
            open_found += got == opened
    false_open = sum(1 for c, s in found.items() if s == opened and truth.get(c) != opened)
    return Score(
        cells=len(truth),
        reported=reported,
        agree=agree,
        open_truth=open_truth,
        open_found=open_found,
        false_open=false_open,
        open_only=open_only,
    )
