"""The nmap engine: one nmap run per technique through python-nmap's ``PortScanner``.

This is the only module that imports python-nmap. The nmap command line is built as a list
from the validated ``ScanRequest`` by the pure ``nmap_arguments``: every element comes from a
typed field (an enum letter, an int, a checked IP address, a formatted port list), so there is
no free-form string through which ``-iL``, ``-oN``, ``--script`` or an extra target could be
smuggled. nmap's raw XML goes through ``twinscan.formats.nmap_xml_read.parse_nmap_xml`` (extraports
expanded), never through python-nmap's dict, which drops folded ports. The scan waits in a helper
thread so that Ctrl-C stops it at once: the nmap process is killed, none is left behind.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import shlex
import shutil
import threading
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twinscan.core.errors import EnvironmentProblem, ScanFailed, TargetError
from twinscan.core.progress import NoProgress, Progress
from twinscan.core.timing import TEMPLATES
from twinscan.core.vocab import Engine, Proto, Technique
from twinscan.engines import interrupt
from twinscan.request.ports import format_port_list

if TYPE_CHECKING:
    from twinscan.core.schema import ScanResult
    from twinscan.request.model import ScanRequest

INSTALL_HINT = "nmap is not installed: run `make setup` (or apt-get install nmap)"

#: Fixed part of the wall-clock budget for one nmap run, and the extra per probe (generous:
#: a UDP scan under ICMP rate limiting answers about one closed port per second).
TIMEOUT_BASE_S = 120.0
TIMEOUT_PER_PROBE_S = 1.5
TIMEOUT_MAX_S = 6 * 3600.0


@dataclasses.dataclass(frozen=True, slots=True)
class NmapRun:
    """One nmap run: the normalized result, nmap's raw XML and the exact command."""

    result: ScanResult
    xml: bytes
    command: tuple[str, ...]


def _ms(value: float) -> str:
    return f"{value:g}ms"


def _checked_targets(request: ScanRequest) -> list[str]:
    out: list[str] = []
    for target in request.targets:
        try:
            out.append(str(ipaddress.ip_address(target)))
        except ValueError:
            raise TargetError(f"not an IP address: {target!r}") from None
    if not out:
        raise TargetError("no targets to scan")
    return out


def nmap_arguments(request: ScanRequest, technique: Technique) -> list[str]:
    """nmap's options (without the binary, ``-oX -`` and the targets) for one technique (pure)."""
    args = ["-n", "-Pn", "--reason"]
    families = {":" in target for target in request.targets}
    if len(families) > 1:
        raise TargetError("nmap scans IPv4 or IPv6 (-6) in one run: split the targets by family")
    if True in families:
        args.append("-6")  # IPv6 targets: nmap needs -6 (compare -6, --engine nmap -6)
    if technique is Technique.FTP_BOUNCE:
        relay = request.bounce
        if relay is None:
            raise TargetError("FTP bounce scan needs a relay (-b)")
        relay_ip = str(ipaddress.ip_address(relay.host))
        if not 0 < relay.port < 65536:
            raise TargetError(f"bad FTP relay port {relay.port}")
        args += ["-b", f"{relay.user}:{relay.password}@{relay_ip}:{relay.port}"]
    else:
        args.append(f"-s{technique.letter}")
    timing = request.timing
    base = TEMPLATES[timing.level]
    args.append(f"-T{timing.level}")
    if timing.max_retries != base.max_retries:
        args += ["--max-retries", str(int(timing.max_retries))]
    if timing.min_rate is not None:
        args += ["--min-rate", f"{timing.min_rate:g}"]
    if timing.max_rate is not None:
        args += ["--max-rate", f"{timing.max_rate:g}"]
    if timing.scan_delay_ms != base.scan_delay_ms:
        args += ["--scan-delay", _ms(timing.scan_delay_ms)]
    if timing.initial_rtt_timeout_ms != base.initial_rtt_timeout_ms:
        args += ["--initial-rtt-timeout", _ms(timing.initial_rtt_timeout_ms)]
    if timing.max_rtt_timeout_ms != base.max_rtt_timeout_ms:
        args += ["--max-rtt-timeout", _ms(timing.max_rtt_timeout_ms)]
    if technique is Technique.UDP and request.defeat_icmp_ratelimit:
        args.append("--defeat-icmp-ratelimit")
    if not request.randomize_ports:
        args.append("-r")
    ports = request.ports_for(technique)
    if not ports:
        raise TargetError(f"no {technique.proto} ports to scan for {technique}")
    prefix = "T:" if technique.proto is Proto.TCP else "U:"
    args += ["-p", prefix + format_port_list(ports)]
    return args


def nmap_command(request: ScanRequest, technique: Technique, nmap_path: str = "nmap") -> list[str]:
    """The complete argv python-nmap runs: ``nmap -oX - TARGETS... OPTIONS...`` (pure)."""
    return [nmap_path, "-oX", "-", *_checked_targets(request), *nmap_arguments(request, technique)]


def timeout_for(request: ScanRequest, technique: Technique) -> float:
    """The wall-clock budget for one nmap run (nothing runs forever)."""
    budget = TIMEOUT_BASE_S + TIMEOUT_PER_PROBE_S * request.probes(technique)
    return min(budget, TIMEOUT_MAX_S)


def find_nmap() -> str:
    path = shutil.which("nmap")
    if path is None:
        raise EnvironmentProblem(INSTALL_HINT)
    return path


def run_nmap(
    request: ScanRequest, technique: Technique, *, progress: Progress | None = None
) -> NmapRun:
    """Run nmap for one technique and return its verdicts, raw XML and command line."""
    import nmap

    from twinscan.formats.nmap_xml_read import NmapXmlError, parse_nmap_xml

    progress = progress or NoProgress()
    nmap_path = find_nmap()
    command = nmap_command(request, technique, nmap_path)
    targets = _checked_targets(request)
    options = nmap_arguments(request, technique)
    try:
        scanner = nmap.PortScanner(nmap_search_path=(nmap_path,))
    except nmap.PortScannerError as exc:
        raise EnvironmentProblem(f"{INSTALL_HINT} ({_first_line(exc)})") from None
    progress.start(f"nmap -s{technique.letter}", 0)  # 0: nmap tells no count; elapsed time
    try:
        _scan_interruptibly(
            scanner,
            command,
            progress,
            hosts=" ".join(targets),
            ports=None,
            arguments=shlex.join(options),
            timeout=max(1, int(timeout_for(request, technique))),
        )
    except nmap.PortScannerTimeout:
        raise ScanFailed(
            f"nmap -s{technique.letter} did not finish within "
            f"{timeout_for(request, technique):.0f} s and was stopped"
        ) from None
    except nmap.PortScannerError as exc:
        raise ScanFailed(f"nmap failed: {_first_line(exc)}") from None
    except (AttributeError, TypeError):
        # python-nmap's analyser dereferences <runstats> unconditionally; nmap that died
        # mid-run leaves XML without it. Our own reader below reports what is wrong.
        pass
    finally:
        progress.finish()
    raw = scanner.get_nmap_last_output()
    xml = raw if isinstance(raw, bytes) else str(raw).encode()
    try:
        parsed = parse_nmap_xml(xml, engine=Engine.NMAP)
    except NmapXmlError as exc:
        raise ScanFailed(f"nmap -s{technique.letter} gave unusable XML: {exc}") from None
    if parsed.meta.incomplete:
        raise ScanFailed(f"nmap -s{technique.letter} did not complete (no successful <finished>)")
    meta = dataclasses.replace(parsed.meta, arguments=shlex.join(command), techniques=(technique,))
    columns = parsed.unbuilt_columns
    if columns is not None:
        result = type(parsed)(columns=columns, meta=meta)
    else:
        result = type(parsed)(frame=parsed.frame, meta=meta)
    return NmapRun(result=result, xml=xml, command=tuple(command))


#: how often the wait for nmap wakes up to show it is alive (progress heartbeat).
_HEARTBEAT_S = 0.25
#: how long nmap gets to exit after SIGKILL before the wait gives up on it.
_KILL_WAIT_S = 10.0


def _scan_interruptibly(
    scanner: Any, command: Sequence[str], progress: Progress, **scan_args: object
) -> None:
    """``scanner.scan(**scan_args)`` in a helper thread, so the main thread stays free to show
    progress and to take Ctrl-C (SIGINT, or SIGTERM under ``interrupt.terminate_as_interrupt``).

    On ``KeyboardInterrupt`` the nmap process python-nmap started (``command``, a child of this
    process) is killed and reaped before the interrupt goes on: no nmap is left behind.
    """
    outcome: list[BaseException] = []
    # An Event, not Thread.join/is_alive: a KeyboardInterrupt inside join() leaves the thread
    # looking finished on Python 3.11 while nmap still runs.
    done = threading.Event()

    def target() -> None:
        try:
            scanner.scan(**scan_args)
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            outcome.append(exc)
        finally:
            done.set()

    threading.Thread(target=target, name="nmap", daemon=True).start()
    try:
        while not done.wait(_HEARTBEAT_S):
            progress.advance(0)
    except KeyboardInterrupt:
        with interrupt.deferred():  # a second Ctrl-C must not leave nmap running
            _kill_nmap(command, done)
        raise
    if outcome:
        raise outcome[0]


def _kill_nmap(command: Sequence[str], done: threading.Event) -> None:
    """Kill the nmap child running ``command`` until the thread waiting for it is done (the
    thread may still be about to start it). Only this process's own children are touched."""
    import psutil

    me = psutil.Process()
    deadline = time.monotonic() + _KILL_WAIT_S
    wanted = list(command)
    while not done.is_set() and time.monotonic() < deadline:
        for child in me.children():
            try:
                if child.cmdline() == wanted:
                    child.kill()
            except psutil.Error:
                pass
        done.wait(0.05)


def scan(
    request: ScanRequest, technique: Technique, *, progress: Progress | None = None
) -> ScanResult:
    """Engine entry point (see ``twinscan.engines``): one technique through nmap."""
    return run_nmap(request, technique, progress=progress).result


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().replace("\\n", "\n")
    for line in text.splitlines():
        line = line.strip(" '\"")
        if line and not line.lower().startswith("warning"):
            return line
    return text or type(exc).__name__
