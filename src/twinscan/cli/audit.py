"""``twinscan audit``: scan, check the result against a policy (and a baseline), say what to do.

The command and its I/O glue: the scan (``run_scan``), the owners of local open ports (psutil,
as ``twinscan who``), nmap -sV on just the open ports of the findings (``--versions``, through
python-nmap). Everything else — the policy, the findings, the advice, the reports — is the pure
``twinscan.audit`` package.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinscan.cli import app, funnel
from twinscan.cli.options import ScanOptions, describe_request, scan_options
from twinscan.core.vocab import PortState, Proto

if TYPE_CHECKING:
    from twinscan.audit.advice import OwnerFacts, ServiceFacts
    from twinscan.audit.findings import Cell, CellKey, Finding
    from twinscan.audit.policy import Policy
    from twinscan.core.schema import ScanResult
    from twinscan.request.model import ScanRequest

#: Budget of the nmap -sV run of --versions.
VERSIONS_TIMEOUT_S = 600


@app.command()
@funnel
@scan_options
def audit(
    opts: ScanOptions,
    policy: Annotated[
        Path, typer.Option("--policy", help="the policy: TOML [[rule]] tables (see README)")
    ],
    baseline: Annotated[
        Path | None,
        typer.Option(
            "--baseline", help="an earlier scan (twinscan CSV/JSON lines, nmap XML) to diff against"
        ),
    ] = None,
    versions: Annotated[
        bool,
        typer.Option(
            "--versions", help="ask nmap -sV for the service and version of open findings"
        ),
    ] = False,
    csv: Annotated[Path | None, typer.Option("--csv", help="write the findings as CSV")] = None,
    json: Annotated[Path | None, typer.Option("--json", help="write the findings as JSON")] = None,
    html: Annotated[Path | None, typer.Option("--html", help="write an HTML report")] = None,
) -> None:
    """Check what TARGETs expose against a policy (and a baseline scan), and say what to do.

    Without -p: every TCP port plus the UDP ports the policy names. Without -s: SYN (and UDP for
    UDP ports) as root, a connect scan otherwise.

    Exit status: 0 compliant, 1 findings, 2 bad input (policy, baseline, options), 3 missing root
    or nmap, 4 the scan failed, 130 interrupted (the findings of what finished are written).
    """
    from twinscan.audit.findings import audit as run_audit
    from twinscan.audit.policy import load_policy
    from twinscan.audit.render import AuditReport, csv_text, html_text, json_text, text_report
    from twinscan.cli.progress_bar import progress_for_terminal
    from twinscan.core.vocab import Engine
    from twinscan.engines import run_scan
    from twinscan.formats.outpaths import check_output_paths, is_stdout

    outputs = {"--csv": csv, "--json": json, "--html": html}
    check_output_paths(outputs)
    rules = load_policy(policy)
    before = load_baseline(baseline) if baseline is not None else None
    opts, letters, notes = audit_options(opts, rules, is_root=os.geteuid() == 0)
    request = opts.request(default_letters=letters)
    if opts.verbose:
        for line in describe_request(request):
            typer.echo(line, err=True)
    with progress_for_terminal() as progress:
        result = run_scan(request, Engine.NATIVE, progress=progress)
    found = run_audit(scan_cells(result), rules, hosts=request.targets, baseline=before)
    owners = local_owners(found.findings)
    services = service_versions(request, found.findings) if versions else {}
    report = AuditReport(
        audit=found,
        policy=str(policy),
        targets=request.targets,
        techniques=tuple(t.value for t in request.techniques),
        owners=owners,
        services=services,
        notes=tuple(notes),
        incomplete=result.meta.incomplete,
    )
    for path, render in ((csv, csv_text), (json, json_text), (html, html_text)):
        if path is not None:
            write_text(path, render(report))
    to_stdout = any(is_stdout(p) for p in outputs.values())
    typer.echo(text_report(report), nl=False, err=to_stdout)
    if result.meta.incomplete:
        raise typer.Exit(130)
    raise typer.Exit(0 if found.compliant else 1)


def audit_options(
    opts: ScanOptions, policy: Policy, *, is_root: bool
) -> tuple[ScanOptions, str, list[str]]:
    """The scan the audit runs (pure): default ports and techniques, and notes about them.

    Ports: ``-p``/``--top-ports``/``-F`` if given, else every TCP port plus the UDP ports the
    policy names. Techniques: ``-s`` if given, else SYN as root (plus UDP when UDP ports are
    scanned: the policy's, or ``U:`` ports of ``-p``), a connect scan otherwise.
    """
    from twinscan.request.ports import format_port_list, parse_ports

    notes: list[str] = []
    udp = policy.named_ports(Proto.UDP)
    wants_tcp, wants_udp = True, False
    if opts.ports is None and opts.top_ports is None and not opts.fast:
        ports = "T:1-65535" + (f",U:{format_port_list(udp)}" if udp else "")
        opts = dataclasses.replace(opts, ports=ports)
        wants_udp = bool(udp)
    elif opts.ports is not None:
        plan = parse_ports(opts.ports)
        wants_tcp, wants_udp = bool(plan.tcp), bool(plan.udp) and "u:" in opts.ports.lower()
    if opts.scan_types:
        return opts, "", notes
    if is_root or not wants_tcp:  # UDP alone: the UDP scan says if root is missing
        return opts, ("S" if wants_tcp else "") + ("U" if wants_udp else ""), notes
    if wants_udp:
        notes.append(
            "UDP ports not scanned: a UDP scan needs root (run as root, or give -sU as root)"
        )
    return opts, "T", notes


def load_baseline(path: Path) -> list[tuple[CellKey, PortState]]:
    """The (host, proto, port) cells and states of an earlier scan (CSV, JSON lines, nmap XML)."""
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


def write_text(path: Path, text: str) -> None:
    if str(path) == "-":
        sys.stdout.write(text)
        return
    path.write_text(text, encoding="utf-8")
