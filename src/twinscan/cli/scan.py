"""``twinscan scan``: nmap-style options over ``twinscan.engines.run_scan``."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twinscan.cli import app, funnel
from twinscan.errors import UsageError
from twinscan.vocab import Engine, Technique

if TYPE_CHECKING:
    from twinscan.schema import ScanResult

_TECH_FLAGS: dict[Technique, str] = {
    t: f"-s{t.letter}" for t in Technique if t is not Technique.FTP_BOUNCE
}


@app.command(context_settings={"ignore_unknown_options": False})
@funnel
def scan(
    targets: Annotated[
        list[str] | None,
        typer.Argument(help="addresses, CIDR, octet ranges (198.18.1.1-5), hostnames"),
    ] = None,
    s_s: Annotated[bool, typer.Option("-sS", help="SYN (half-open) scan")] = False,
    s_t: Annotated[
        bool, typer.Option("-sT", help="TCP connect scan (no privileges needed)")
    ] = False,
    s_f: Annotated[bool, typer.Option("-sF", help="FIN scan")] = False,
    s_x: Annotated[bool, typer.Option("-sX", help="Xmas scan (FIN, PSH, URG)")] = False,
    s_n: Annotated[bool, typer.Option("-sN", help="NULL scan (no flags)")] = False,
    s_a: Annotated[bool, typer.Option("-sA", help="ACK scan (filtered vs unfiltered)")] = False,
    s_w: Annotated[bool, typer.Option("-sW", help="Window scan")] = False,
    s_m: Annotated[bool, typer.Option("-sM", help="Maimon scan (FIN/ACK)")] = False,
    s_u: Annotated[bool, typer.Option("-sU", help="UDP scan")] = False,
    bounce: Annotated[
        str | None, typer.Option("-b", help="FTP bounce scan through [user:pass@]relay[:port]")
    ] = None,
    ports: Annotated[
        str | None,
        typer.Option(
            "-p", help="ports: 22,80,1000-2000, -p-, T:/U: prefixes, well-known|registered|dynamic"
        ),
    ] = None,
    top_ports: Annotated[
        int | None, typer.Option("--top-ports", help="the N most common ports")
    ] = None,
    input_list: Annotated[str | None, typer.Option("-iL", help="read targets from a file")] = None,
    exclude: Annotated[
        list[str] | None, typer.Option("--exclude", help="addresses to skip")
    ] = None,
    timing: Annotated[int, typer.Option("-T", min=0, max=5, help="timing template 0-5")] = 3,
    max_retries: Annotated[int | None, typer.Option("--max-retries", min=0)] = None,
    min_rate: Annotated[
        float | None, typer.Option("--min-rate", help="packets per second, at least")
    ] = None,
    max_rate: Annotated[
        float | None, typer.Option("--max-rate", help="packets per second, at most")
    ] = None,
    scan_delay: Annotated[
        str | None, typer.Option("--scan-delay", help="delay between probes (250ms, 1s)")
    ] = None,
    no_randomize: Annotated[bool, typer.Option("-r", help="scan ports in order")] = False,
    engine: Annotated[
        Engine, typer.Option("--engine", help="native (twinscan) or nmap")
    ] = Engine.NATIVE,
    csv: Annotated[
        Path | None, typer.Option("--csv", help="write rows as CSV ('-' = stdout)")
    ] = None,
    xml: Annotated[Path | None, typer.Option("-oX", help="write nmap-compatible XML")] = None,
    json: Annotated[Path | None, typer.Option("--json", help="write rows as JSON lines")] = None,
    owners: Annotated[
        bool, typer.Option("--owners", help="add the owning process of local open ports")
    ] = False,
    defeat_icmp_ratelimit: Annotated[
        bool,
        typer.Option(
            "--defeat-icmp-ratelimit",
            help="UDP: don't wait for rate-limited ICMP (closed|filtered)",
        ),
    ] = False,
    allow_external: Annotated[
        bool,
        typer.Option(
            "--allow-external", help="allow targets outside loopback, the lab and local addresses"
        ),
    ] = False,
    show_closed: Annotated[
        bool, typer.Option("--show-closed", help="list closed ports too")
    ] = False,
) -> None:
    """Scan TARGETs like nmap does, with twinscan's native engine (or nmap with --engine nmap)."""
    from twinscan.engines import run_scan
    from twinscan.report import render_text
    from twinscan.scanspec import build_request, parse_duration_ms

    flags = {
        Technique.SYN: s_s, Technique.CONNECT: s_t, Technique.FIN: s_f, Technique.XMAS: s_x,
        Technique.NULL: s_n, Technique.ACK: s_a, Technique.WINDOW: s_w, Technique.MAIMON: s_m,
        Technique.UDP: s_u,
    }  # fmt: skip
    techniques = [t for t in _argv_order(flags) if flags[t]]
    request = build_request(
        targets=targets or [],
        techniques=techniques,
        ports=ports,
        top=top_ports,
        input_list=input_list,
        exclude=exclude or [],
        timing_level=timing,
        max_retries=max_retries,
        min_rate=min_rate,
        max_rate=max_rate,
        scan_delay_ms=parse_duration_ms(scan_delay) if scan_delay else None,
        randomize_ports=not no_randomize,
        bounce=bounce,
        owners=owners,
        allow_external=allow_external,
        defeat_icmp_ratelimit=defeat_icmp_ratelimit,
        argv=("twinscan", *sys.argv[1:]),
    )
    tcp_techniques = [t.value for t in request.techniques if t.proto.value == "tcp"]
    if xml is not None and len(tcp_techniques) > 1:
        raise UsageError(
            f"-oX holds one TCP technique per file, as nmap's format does; got {', '.join(tcp_techniques)}"
            " (scan them one at a time, or use --csv/--json)"
        )
    from twinscan.cli.progress import progress_for_terminal

    with progress_for_terminal() as progress:
        result = run_scan(request, engine, progress=progress)
    if owners:
        from twinscan.owners import add_owners

        result.frame = add_owners(result.frame)
    wrote = write_outputs(result, csv=csv, xml=xml, json=json)
    if not wrote or any(str(p) != "-" for p in (csv, xml, json) if p is not None):
        typer.echo(render_text(result, show_closed=show_closed), err=wrote)
    if result.meta.incomplete:
        raise typer.Exit(130)


def _argv_order(flags: dict[Technique, bool]) -> list[Technique]:
    """Techniques in the order their -s flags appear on the command line."""
    order = {flag: i for i, flag in enumerate(sys.argv)}
    return sorted(flags, key=lambda t: order.get(_TECH_FLAGS[t], len(order)))


def write_outputs(
    result: ScanResult, *, csv: Path | None, xml: Path | None, json: Path | None
) -> bool:
    """Write the requested files; True when anything was written."""
    from twinscan.schema import write_result_csv

    if csv is not None:
        write_result_csv(result, sys.stdout if str(csv) == "-" else csv)
    if json is not None:
        from twinscan.exports import write_jsonl

        write_jsonl(result, sys.stdout if str(json) == "-" else json)
    if xml is not None:
        from twinscan.exports import write_nmap_xml

        write_nmap_xml(result, sys.stdout if str(xml) == "-" else xml)
    return any(p is not None for p in (csv, xml, json))
