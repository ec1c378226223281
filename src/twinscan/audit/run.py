"""The audit's I/O glue: scan, read a baseline, find local owners, ask nmap -sV; then the pure
core (``findings``, ``advice``) decides and ``render`` writes.

The one module of ``twinscan.audit`` allowed to touch processes and nmap (see ``ruff.toml``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from twinscan.core.vocab import Engine, PortState, Proto

if TYPE_CHECKING:
    from twinscan.audit.advice import OwnerFacts, ServiceFacts
    from twinscan.audit.findings import Cell, CellKey, Finding
    from twinscan.audit.policy import Policy
    from twinscan.audit.render import AuditReport
    from twinscan.core.progress import Progress
    from twinscan.core.schema import ScanResult
    from twinscan.request.model import ScanRequest

#: Budget of the nmap -sV run of --versions.
VERSIONS_TIMEOUT_S = 600


def run_audit(
    request: ScanRequest,
    policy: Policy,
    *,
    policy_path: str,
    baseline: list[tuple[CellKey, PortState]] | None = None,
    versions: bool = False,
    notes: Sequence[str] = (),
    progress: Progress | None = None,
) -> AuditReport:
    """Scan ``request`` with the native engine and audit the verdicts against ``policy``."""
    from twinscan.audit.findings import audit
    from twinscan.audit.render import AuditReport
    from twinscan.engines import run_scan

    result = run_scan(request, Engine.NATIVE, progress=progress)
    found = audit(scan_cells(result), policy, hosts=request.targets, baseline=baseline)
    return AuditReport(
        audit=found,
        policy=policy_path,
        targets=request.targets,
        techniques=tuple(t.value for t in request.techniques),
        owners=local_owners(found.findings),
        services=service_versions(request, found.findings) if versions else {},
        notes=tuple(notes),
        incomplete=result.meta.incomplete,
    )


def load_baseline(path: Path) -> list[tuple[CellKey, PortState]]:
    """The (host, proto, port) cells and states of an earlier scan (CSV, JSON lines, nmap XML,
    Parquet: ``compare.diff.load_scan``)."""
    from twinscan.compare.diff import load_scan

    frame = load_scan(path)
    return [
        ((str(h), Proto(str(pr)), int(p)), PortState(str(s)))
        for h, pr, p, s in zip(
            frame["host"], frame["proto"], frame["port"], frame["state"], strict=True
        )
    ]


def scan_cells(result: ScanResult) -> Iterator[Cell]:
    """The scan's verdicts as audit cells, from the engine's columns when no frame was built."""
    from twinscan.audit.findings import Cell
    from twinscan.core.schema import category_values

    columns = result.unbuilt_columns
    if columns is not None:
        states = [PortState(s) for s in category_values("state")]
        reasons = category_values("reason")
        tech, proto = columns.technique.value, columns.proto
        for host, port, state, reason in zip(
            columns.host, columns.port, columns.state, columns.reason, strict=True
        ):
            yield Cell(str(host), proto, int(port), tech, states[state], reasons[reason])
        return
    frame = result.frame
    for host, proto_, port, tech_, state_, reason_ in zip(
        frame["host"].astype(str),
        frame["proto"].astype(str),
        frame["port"],
        frame["technique"].astype(str),
        frame["state"].astype(str),
        frame["reason"].astype(str),
        strict=True,
    ):
        yield Cell(host, Proto(proto_), int(port), tech_, PortState(state_), reason_)


def local_owners(findings: Sequence[Finding]) -> dict[CellKey, OwnerFacts]:
    """The process behind each open finding on a local address (as ``twinscan who`` finds it)."""
    from twinscan.audit.advice import OwnerFacts
    from twinscan.local.owners import describe, local_sockets, match
    from twinscan.request.safety import is_local, local_addresses

    wanted = [f.cell for f in findings if f.cell.state is PortState.OPEN]
    if not wanted:
        return {}
    local = local_addresses()
    wanted = [c for c in wanted if is_local(c.host, local)]
    if not wanted:
        return {}
    sockets = local_sockets()
    out: dict[CellKey, OwnerFacts] = {}
    for cell in wanted:
        hits = match(sockets, cell.host, cell.port, cell.proto)
        if not hits:
            continue
        owner = describe(hits[0])
        out[cell.key] = OwnerFacts(
            pid=owner.pid,
            process=owner.process,
            user=owner.user,
            cmdline=owner.cmdline,
            unit=_unit_of(owner.pid),
        )
    return out


def _unit_of(pid: int | None) -> str | None:
    from twinscan.audit.advice import unit_from_cgroup

    if pid is None:
        return None
    try:
        return unit_from_cgroup(Path(f"/proc/{pid}/cgroup").read_text())
    except OSError:
        return None


def version_ports(findings: Sequence[Finding]) -> dict[str, str]:
    """Per host, nmap's ``-p`` for the open ports among the findings (``T:22,80,U:53``)."""
    from twinscan.request.ports import format_port_list

    per_host: dict[str, dict[Proto, set[int]]] = {}
    for f in findings:
        if f.cell.state is PortState.OPEN:
            per_host.setdefault(f.cell.host, {}).setdefault(f.cell.proto, set()).add(f.cell.port)
    out: dict[str, str] = {}
    for host, protos in per_host.items():
        parts = [
            f"{'T' if proto is Proto.TCP else 'U'}:{format_port_list(ports)}"
            for proto, ports in sorted(protos.items(), key=lambda kv: kv[0].value)
        ]
        out[host] = ",".join(parts)
    return out


def service_versions(
    request: ScanRequest, findings: Sequence[Finding]
) -> dict[CellKey, ServiceFacts]:
    """nmap -sV (through python-nmap) on just the open ports of the findings, host by host.

    Only the request's targets, which passed the safety guard, are handed to nmap.
    """
    import shlex

    from twinscan.audit.advice import ServiceFacts
    from twinscan.core.errors import EnvironmentProblem, ScanFailed
    from twinscan.engines.nmap_engine import INSTALL_HINT, find_nmap

    ports = version_ports(findings)
    if not ports:
        return {}
    import nmap

    nmap_path = find_nmap()
    try:
        scanner = nmap.PortScanner(nmap_search_path=(nmap_path,))
    except nmap.PortScannerError as exc:
        raise EnvironmentProblem(f"{INSTALL_HINT} ({exc})") from None
    allowed = set(request.targets)
    out: dict[CellKey, ServiceFacts] = {}
    for host, spec in ports.items():
        if host not in allowed:  # never reached: findings come from the request's scan
            continue
        args = ["-sV", "--version-light", "-n", "-Pn", f"-T{request.timing.level}"]
        if "T:" in spec:
            args.append("-sS" if os.geteuid() == 0 else "-sT")
        if "U:" in spec:
            args.append("-sU")
        try:
            scanner.scan(
                hosts=host, ports=spec, arguments=shlex.join(args), timeout=VERSIONS_TIMEOUT_S
            )
        except nmap.PortScannerTimeout:
            raise ScanFailed(f"nmap -sV did not finish within {VERSIONS_TIMEOUT_S} s") from None
        except nmap.PortScannerError as exc:
            raise ScanFailed(f"nmap -sV failed: {str(exc).strip()[:200]}") from None
        if host not in scanner.all_hosts():
            continue
        for proto in (Proto.TCP, Proto.UDP):
            table = scanner[host].get(proto.value, {})
            for port, info in table.items():
                out[(host, proto, int(port))] = ServiceFacts(
                    name=str(info.get("name", "")),
                    product=str(info.get("product", "")),
                    version=str(info.get("version", "")),
                    extrainfo=str(info.get("extrainfo", "")),
                )
    return out
