"""What the benchmark runs (pure): engines, workloads, the catalog, argv per engine, run order.

A workload is one scan (technique x targets x ports) that every applicable engine runs with the
same options. Nothing here touches the network or starts a process: ``argv_for`` only builds
command lines, ``schedule`` only orders runs.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence
from enum import StrEnum
from pathlib import Path

from twinscan.core.vocab import Technique

#: Every workload runs on loopback (inside the bench lab's scanner namespace) or on the lab.
LOOPBACK = "127.0.0.1"


class BenchEngine(StrEnum):
    """Who scans. ``nmap`` is the baseline every ratio is taken against."""

    NATIVE = "twinscan"
    WRAPPED = "twinscan-nmap"
    NMAP = "nmap"
    MASSCAN = "masscan"


BASELINE = BenchEngine.NMAP


class OutputKind(StrEnum):
    """How to read what an engine wrote."""

    NMAP_XML = "nmap-xml"
    MASSCAN_LIST = "masscan-list"


OUTPUT_OF: dict[BenchEngine, OutputKind] = {
    BenchEngine.NATIVE: OutputKind.NMAP_XML,
    BenchEngine.WRAPPED: OutputKind.NMAP_XML,
    BenchEngine.NMAP: OutputKind.NMAP_XML,
    BenchEngine.MASSCAN: OutputKind.MASSCAN_LIST,
}

#: Default engines of a workload; masscan joins only SYN scans of the lab (it has no other
#: technique and cannot send on loopback, which has no Ethernet header).
SCANNERS: tuple[BenchEngine, ...] = (BenchEngine.NATIVE, BenchEngine.WRAPPED, BenchEngine.NMAP)


@dataclasses.dataclass(frozen=True, slots=True)
class Workload:
    """One scan every engine runs: ``technique`` on ports 1..``nports`` of ``hosts``.

    ``hosts`` are host names of the bench lab spec; empty means loopback (127.0.0.1).
    """

    name: str
    group: str
    technique: Technique
    hosts: tuple[str, ...]
    nports: int
    engines: tuple[BenchEngine, ...] = SCANNERS
    pairs: int = 5
    warmup: int = 1
    #: Kill a run after this many seconds (it is then recorded as a timeout, not measured).
    timeout_s: float = 300.0
    timing: int = 4
    #: For FTP bounce: the relay's host name in the spec.
    relay: str | None = None

    def __post_init__(self) -> None:
        if not 1 <= self.nports <= 65535:
            raise ValueError(f"{self.name}: nports must be 1-65535")
        if self.pairs < 1 or self.warmup < 0:
            raise ValueError(f"{self.name}: pairs >= 1 and warmup >= 0")
        if (self.technique is Technique.FTP_BOUNCE) != (self.relay is not None):
            raise ValueError(f"{self.name}: a relay goes with FTP bounce and only with it")
        if BenchEngine.MASSCAN in self.engines and (
            self.technique is not Technique.SYN or self.loopback
        ):
            raise ValueError(f"{self.name}: masscan only does SYN scans of the lab")

    @property
    def loopback(self) -> bool:
        return not self.hosts

    @property
    def ports(self) -> str:
        return f"1-{self.nports}"

    @property
    def probes(self) -> int:
        """The work: ports x hosts (x-axis of the plot)."""
        return self.nports * max(1, len(self.hosts))


@dataclasses.dataclass(frozen=True, slots=True)
class MasscanAdapter:
    """Where masscan sends from: its own interface, address and the MAC it sends to."""

    interface: str
    ip: str
    router_mac: str
    #: masscan's ``--rate`` (packets per second; its default of 100 would measure only that).
    rate: int = 10_000


def twinscan_command(python: str) -> list[str]:
    """How a user runs twinscan: the ``twinscan`` script installed beside ``python`` (as
    nmap is run by its name), else ``python -m twinscan`` (a source tree without the install;
    runpy's imports cost a run ~8 ms more)."""
    script = Path(python).parent / "twinscan"
    if script.is_file() and os.access(script, os.X_OK):
        return [str(script)]
    return [python, "-m", "twinscan"]


def argv_for(
    engine: BenchEngine,
    workload: Workload,
    targets: Sequence[str],
    out: str,
    *,
    python: str,
    relay: str | None = None,
    masscan: MasscanAdapter | None = None,
) -> list[str]:
    """The command line of one run (without the namespace wrapper). ``out``: output file."""
    tech = workload.technique
    if engine in (BenchEngine.NATIVE, BenchEngine.WRAPPED):
        argv = [*twinscan_command(python), "scan"]
        argv += _technique_args(tech, relay)
        # -oX, as nmap writes: the same output and the same reader for both
        argv += ["-p", workload.ports, f"-T{workload.timing}", *targets, "-oX", out]
        if engine is BenchEngine.WRAPPED:
            argv += ["--engine", "nmap"]
        return argv
    if engine is BenchEngine.NMAP:
        # The options twinscan's nmap engine passes (engines/nmap_engine.nmap_arguments).
        argv = ["nmap", "-n", "-Pn", "--reason", *_technique_args(tech, relay)]
        return argv + [f"-T{workload.timing}", "-p", workload.ports, "-oX", out, *targets]
    if masscan is None:
        raise ValueError("masscan needs an adapter")
    return [
        "masscan", "-p", workload.ports, "--rate", str(masscan.rate), "--wait", "1",
        "--adapter", masscan.interface, "--adapter-ip", masscan.ip,
        "--router-mac", masscan.router_mac, "-oL", out, *targets,
    ]  # fmt: skip


def _technique_args(tech: Technique, relay: str | None) -> list[str]:
    if tech is Technique.FTP_BOUNCE:
        if relay is None:
            raise ValueError("FTP bounce needs a relay address")
        return ["-b", f"anonymous:bench@{relay}:21"]
    return [f"-s{tech.letter}"]


@dataclasses.dataclass(frozen=True, slots=True)
class Slot:
    """One run in the schedule. Warm-up runs are recorded but left out of the statistics."""

    round: int
    engine: BenchEngine
    warmup: bool


def schedule(engines: Sequence[BenchEngine], pairs: int, warmup: int) -> list[Slot]:
    """A B C A B C ...: ``warmup`` rounds, then ``pairs`` measured rounds, engines alternating."""
    slots: list[Slot] = []
    for rnd in range(warmup + pairs):
        slots += [Slot(rnd, engine, rnd < warmup) for engine in engines]
    return slots


_WITH_MASSCAN = (*SCANNERS, BenchEngine.MASSCAN)

#: Techniques of the "every technique" workloads (FTP bounce gets its own, smaller one).
_LAB_TECHNIQUES = tuple(t for t in Technique if t is not Technique.FTP_BOUNCE)


#: Measured pairs of the loopback workloads (the others: ``Workload.pairs``, 5).
LOOPBACK_PAIRS = 11


def catalog(*, quick: bool = False) -> tuple[Workload, ...]:
    """The workloads of a full run, or of ``--quick`` (small, one warm-up-free pair each)."""
    if quick:
        return (
            _quick("loopback-1k-syn", "loopback", Technique.SYN, ()),
            _quick("loopback-1k-connect", "loopback", Technique.CONNECT, ()),
            _quick("lab-2x1k-syn", "technique", Technique.SYN, ("h1", "acl"), _WITH_MASSCAN),
        )
    plain2 = ("h1", "acl")
    # Loopback runs last a second or less, so a busy moment of the machine moves one run by a
    # large part of its length (1000-port SYN: 0.11-0.20 s in one run of 5): they get
    # LOOPBACK_PAIRS measured pairs, which cost little, for a steadier median.
    work: list[Workload] = [
        Workload("loopback-65k-syn", "loopback", Technique.SYN, (), 65535, pairs=LOOPBACK_PAIRS),
        Workload(
            "loopback-65k-connect", "loopback", Technique.CONNECT, (), 65535, pairs=LOOPBACK_PAIRS
        ),
        # small scans: the fixed costs (start-up, imports, the end of the scan) dominate
        Workload("loopback-1k-syn", "loopback", Technique.SYN, (), 1000, pairs=LOOPBACK_PAIRS),
        Workload("loopback-1k-udp", "loopback", Technique.UDP, (), 1000, pairs=LOOPBACK_PAIRS),
    ]
    for tech in _LAB_TECHNIQUES:
        engines = _WITH_MASSCAN if tech is Technique.SYN else SCANNERS
        work.append(Workload(f"lab-2x10k-{tech.value}", "technique", tech, plain2, 10_000, engines))
    work += [
        Workload(
            "lab-1x1k-ftp-bounce",
            "technique",
            Technique.FTP_BOUNCE,
            ("h1",),
            1000,
            relay="ftp",
            timeout_s=600.0,
        ),  # fmt: skip
        Workload(
            "loss10-1x10k-syn", "loss", Technique.SYN, ("loss",), 10_000, engines=_WITH_MASSCAN
        ),  # fmt: skip
        Workload("icmp-ratelimit-1x30-udp", "ratelimit", Technique.UDP, ("rl",), 30, warmup=0),
    ]
    for nhosts, nports in ((1, 1000), (1, 10_000), (1, 65535), (4, 10_000), (16, 10_000)):
        hosts = tuple(f"h{i}" for i in range(1, nhosts + 1))
        work.append(
            Workload(
                f"growth-{nhosts}x{_k(nports)}-syn",
                "growth",
                Technique.SYN,
                hosts,
                nports,
                engines=_WITH_MASSCAN,
                timeout_s=900.0,
            )  # fmt: skip
        )
    return tuple(work)


def _quick(
    name: str,
    group: str,
    tech: Technique,
    hosts: tuple[str, ...],
    engines: tuple[BenchEngine, ...] = SCANNERS,
) -> Workload:
    """A ``--quick`` workload: 1000 ports, two measured pairs, no warm-up."""
    return Workload(name, group, tech, hosts, 1000, engines, pairs=2, warmup=0, timeout_s=20.0)


def _k(n: int) -> str:
    return f"{n // 1000}k" if n >= 1000 else str(n)
