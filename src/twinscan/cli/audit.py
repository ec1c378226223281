"""``twinscan audit``: parse the options, choose the audit's default ports and techniques
(``audit_options``), call ``twinscan.audit.run.run_audit`` and render its report."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinscan.cli.base import app, funnel
from twinscan.cli.options import ScanOptions, describe_request, scan_options
from twinscan.core.vocab import Proto

if TYPE_CHECKING:
    from twinscan.audit.policy import Policy


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
            "--baseline",
            help="an earlier scan (twinscan CSV/JSON lines/Parquet, nmap XML) to diff against",
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
    from twinscan.audit.policy import load_policy
    from twinscan.audit.render import csv_text, html_text, json_text, text_report
    from twinscan.audit.run import load_baseline, run_audit
    from twinscan.cli.progress_bar import progress_for_terminal
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
        report = run_audit(
            request,
            rules,
            policy_path=str(policy),
            baseline=before,
            versions=versions,
            notes=notes,
            progress=progress,
        )
    for path, render in ((csv, csv_text), (json, json_text), (html, html_text)):
        if path is not None:
            write_text(path, render(report))
    to_stdout = any(is_stdout(p) for p in outputs.values())
    typer.echo(text_report(report), nl=False, err=to_stdout)
    if report.incomplete:
        raise typer.Exit(130)
    raise typer.Exit(0 if report.audit.compliant else 1)


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


def write_text(path: Path, text: str) -> None:
    if str(path) == "-":
        sys.stdout.write(text)
        return
    path.write_text(text, encoding="utf-8")
