"""``twinscan demo``: bring up the lab, compare both engines against its truth, tear it down.

The comparisons run inside the lab's scanner namespace (the only place with a route to the lab
and none off the machine) by re-invoking ``twinscan compare`` there through the lab's exec
helper. The demo uses its own lab prefix, so it never touches a lab the user has up, and it
always removes its lab again, on success, failure or Ctrl-C.

``demo_jobs`` (pure) plans the compare command lines from the lab spec.
"""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.core.errors import ScanFailed
from twinscan.core.vocab import Engine, Technique
from twinscan.request.ports import format_port_list

if TYPE_CHECKING:
    from twinscan.lab.spec import LabSpec

#: The demo's own lab prefix (never the user's default ``ts`` lab).
DEMO_PREFIX = "tsdemo"
#: Wall-clock budget of one compare run inside the lab.
COMPARE_TIMEOUT_S = 1800.0
#: Every technique but FTP bounce, which gets its own run over the spec's bounce cells.
MAIN_TECHNIQUES: tuple[Technique, ...] = (
    Technique.CONNECT,
    Technique.SYN,
    Technique.FIN,
    Technique.XMAS,
    Technique.NULL,
    Technique.ACK,
    Technique.WINDOW,
    Technique.MAIMON,
    Technique.UDP,
)


@dataclasses.dataclass(frozen=True, slots=True)
class DemoJob:
    name: str
    argv: tuple[str, ...]
    csv: Path
    html: Path


def native_available(technique: Technique) -> bool:
    """True when twinscan's native engine for ``technique`` is installed."""
    from twinscan.engines import runner

    try:
        runner(Engine.NATIVE, technique)
    except ModuleNotFoundError:
        return False
    return True


def demo_jobs(
    spec: LabSpec,
    out_dir: Path,
    techniques: Sequence[Technique],
    *,
    timing: int = 4,
    python: str = sys.executable,
) -> list[DemoJob]:
    """The ``twinscan compare`` runs of the demo (pure)."""
    base = (python, "-m", "twinscan", "compare")
    common = ("-T", str(timing), "--truth", "--spec", spec.source)
    jobs: list[DemoJob] = []
    main = [t for t in techniques if t is not Technique.FTP_BOUNCE]
    if main:
        letters = "".join(t.letter for t in main)
        port_parts = []
        if any(t.proto.value == "tcp" for t in main):
            port_parts.append("T:" + format_port_list(spec.tcp_universe()))
        if Technique.UDP in main:
            port_parts.append("U:" + format_port_list(spec.udp_universe()))
        csv, html = out_dir / "compare.csv", out_dir / "report.html"
        argv = (
            *base,
            *(h.address for h in spec.hosts),
            "-s",
            letters,
            "-p",
            ",".join(port_parts),
            *common,
            "--csv", str(csv), "--html", str(html), "--xml-dir", str(out_dir / "xml"),
        )  # fmt: skip
        jobs.append(DemoJob("all techniques", argv, csv, html))
    relay_name = spec.scan.bounce_relay
    if Technique.FTP_BOUNCE in techniques and relay_name and spec.scan.bounce_targets:
        relay = spec.host(relay_name)
        csv, html = out_dir / "bounce.csv", out_dir / "bounce.html"
        argv = (
            *base,
            *(spec.host(n).address for n in spec.scan.bounce_targets),
            "-s", "b", "-b", f"{relay.address}:{relay.ftp}",
            "-p", "T:" + format_port_list(spec.scan.bounce_ports),
            *common,
            "--csv", str(csv), "--html", str(html), "--xml-dir", str(out_dir / "xml"),
        )  # fmt: skip
        jobs.append(DemoJob("FTP bounce", argv, csv, html))
    six = [t for t in main if t in (Technique.SYN, Technique.UDP)]
    if spec.subnet6 is not None and six:
        # IPv6 (issue #17): SYN and UDP over every host's IPv6 address, nmap with -6.
        parts = ["T:" + format_port_list(spec.tcp_universe())] if Technique.SYN in six else []
        if Technique.UDP in six:
            parts.append("U:" + format_port_list(spec.udp_universe()))
        csv, html = out_dir / "compare6.csv", out_dir / "report6.html"
        argv = (
            *base, "-6",
            *(str(h.address6) for h in spec.hosts),
            "-s", "".join(t.letter for t in six),
            "-p", ",".join(parts),
            *common,
            "--csv", str(csv), "--html", str(html), "--xml-dir", str(out_dir / "xml6"),
        )  # fmt: skip
        jobs.append(DemoJob("IPv6", argv, csv, html))
    return jobs


#: The audit step: the default lab's two hosts against a policy they violate in every way.
AUDIT_HOSTS: tuple[str, ...] = ("plain", "acl")
AUDIT_PORTS = "T:1-120,443,3389,8080,8443,U:7,9,53,67-69,123,161"


def audit_policy_path() -> Path:
    """``fixtures/policies/lab-violated.toml`` of the checkout (as the default lab spec)."""
    return Path(__file__).resolve().parents[3] / "fixtures" / "policies" / "lab-violated.toml"


def audit_job(
    spec: LabSpec, out_dir: Path, *, timing: int = 4, python: str = sys.executable
) -> DemoJob | None:
    """The demo's ``twinscan audit`` run (pure); None when the spec lacks the policy's hosts."""
    names = {h.name for h in spec.hosts}
    if not set(AUDIT_HOSTS) <= names:
        return None
    csv, html = out_dir / "audit.csv", out_dir / "audit.html"
    argv = (
        python, "-m", "twinscan", "audit",
        *(spec.host(n).address for n in AUDIT_HOSTS),
        "--policy", str(audit_policy_path()), "-p", AUDIT_PORTS, "-T", str(timing),
        "--csv", str(csv), "--html", str(html),
    )  # fmt: skip
    return DemoJob("audit", argv, csv, html)


Exec = Callable[[list[str], str, float], int]
Say = Callable[[str], None]


def _exec_in_lab(argv: list[str], prefix: str, timeout: float) -> int:
    from twinscan.lab.netns import exec_in_scanner

    try:
        return exec_in_scanner(argv, prefix, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ScanFailed(f"a demo comparison took longer than {timeout:.0f} s") from None


@contextlib.contextmanager
def _detect_step(
    spec: LabSpec, prefix: str, out_dir: Path, say: Say, *, on: bool
) -> Iterator[None]:
    """Capture at the spec's first host while the block scans it, then `twinscan detect` it."""
    import shutil

    if not on or shutil.which("tcpdump") is None:
        yield
        return
    from twinscan.bench.detect_matrix import tcpdump

    host = spec.hosts[0]
    pcap, csv = out_dir / "detect.pcap", out_dir / "detect.csv"
    with tcpdump(f"{prefix}-h-{host.name}", "eth0", pcap):
        yield
    say(f"\n== scan detection: what {host.name} ({host.address}) saw, captured at its eth0")
    argv = [sys.executable, "-m", "twinscan", "detect", str(pcap), "--csv", str(csv)]
    code = subprocess.run(argv, timeout=300).returncode
    say(f"detect: exit {code}, rows in {csv}, capture {pcap}")


def run_demo(
    out_dir: Path,
    *,
    spec_path: str | None = None,
    techniques: Sequence[Technique] | None = None,
    timing: int = 4,
    prefix: str = DEMO_PREFIX,
    say: Say = print,
    execute: Exec = _exec_in_lab,
    audit: bool | None = None,
) -> list[DemoJob]:
    """Lab up, every comparison inside its scanner namespace, lab down (always).

    ``audit`` (default: when the lab is real, i.e. ``execute`` is the lab's own) adds a
    ``twinscan audit`` of the lab against ``fixtures/policies/lab-violated.toml`` (SYN + UDP).
    """
    from twinscan.engines import interrupt
    from twinscan.lab import load_spec, netns

    spec = load_spec(spec_path)
    wanted = list(techniques) if techniques else [*MAIN_TECHNIQUES, Technique.FTP_BOUNCE]
    ready = [t for t in wanted if native_available(t)]
    for t in wanted:
        if t not in ready:
            say(f"skipping {t}: twinscan's native {t} engine is not installed")
    if not ready:
        raise ScanFailed("no technique has a native engine installed; nothing to compare")
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = demo_jobs(spec, out_dir, ready, timing=timing)
    if audit is None:
        audit = execute is _exec_in_lab
    audit_run = audit_job(spec, out_dir, timing=timing) if audit else None
    if audit_run is not None:
        jobs.append(audit_run)
    say(f"bringing up lab {prefix!r} from {spec.source} ...")
    try:
        with interrupt.terminate_as_interrupt():  # (a kill takes the lab down as Ctrl-C does)
            _run_jobs(spec, prefix, jobs, out_dir, say, execute)
    finally:
        netns.down(prefix)
        say(f"lab {prefix!r} is down")
    for job in jobs:
        rows = "findings" if job is audit_run else "per-port"
        say(f"{job.name}: {rows} CSV {job.csv}, HTML report {job.html}")
    return jobs


def _run_jobs(
    spec: LabSpec, prefix: str, jobs: list[DemoJob], out_dir: Path, say: Say, execute: Exec
) -> None:
    """The demo's lab up and its jobs run in it (``run_demo`` takes it down)."""
    from twinscan.lab import netns

    netns.up(spec, prefix)
    for i, job in enumerate(jobs):
        say(f"\n== {job.name}: {' '.join(job.argv[1:])}")
        with _detect_step(spec, prefix, out_dir, say, on=i == 0 and execute is _exec_in_lab):
            code = execute(list(job.argv), prefix, COMPARE_TIMEOUT_S)
        if code not in (0, 1):  # audit: 1 = findings, as the policy intends
            raise ScanFailed(f"the {job.name} run failed (exit {code})")
