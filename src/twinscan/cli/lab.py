"""``twinscan lab``: bring the ground-truth lab up and down, inspect it, run commands in it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from twinscan.cli.base import app, funnel

lab_app = typer.Typer(
    help=(
        "The ground-truth lab: network namespaces with real services and firewall rules whose "
        "nmap verdicts are known from the spec (default: fixtures/labs/default.toml). Needs root."
    ),
    no_args_is_help=True,
)
app.add_typer(lab_app, name="lab")

SpecOpt = Annotated[
    Path | None,
    typer.Option(
        "--spec",
        help="lab spec (TOML); default $TWINSCAN_LAB_SPEC or fixtures/labs/default.toml",
        show_default=False,
    ),
]
PrefixOpt = Annotated[
    str | None,
    typer.Option(
        "--prefix",
        help="name prefix of the lab's namespaces and interfaces (default $TWINSCAN_LAB_PREFIX or ts)",
        show_default=False,
    ),
]


def _by_address(host: dict[str, Any]) -> tuple[int, int, str]:
    from twinscan.core.schema import host_sort_key

    return host_sort_key(str(host["address"]))


@lab_app.command("up")
@funnel
def up_cmd(spec: SpecOpt = None, prefix: PrefixOpt = None) -> None:
    """Create the lab's namespaces, rules and services (idempotent)."""
    from twinscan.core.schema import host_sort_key
    from twinscan.lab.netns import up
    from twinscan.lab.spec import load_spec

    state = up(load_spec(spec), prefix)
    verb = "already up" if state.get("already_up") else "up"
    typer.echo(f"lab {state['prefix']!r} {verb}: scanner namespace {state['scanner_ns']}")
    for name, info in sorted(state["hosts"].items(), key=lambda kv: _by_address(kv[1])):
        where = info["namespace"] or "silent (nothing answers)"
        typer.echo(f"  {name:<8} {info['address']:<15} {where}")
    first = min(
        (str(h["address"]) for h in state["hosts"].values()),
        default=state["scanner"],
        key=host_sort_key,
    )
    hint = f"twinscan lab exec --prefix {state['prefix']} -- nmap -n -Pn -sS -p 1-100 {first}"
    typer.echo(f"scan it from the scanner namespace: {hint}")


@lab_app.command("down")
@funnel
def down_cmd(prefix: PrefixOpt = None) -> None:
    """Remove every namespace, process and rule of the lab (also after a crash)."""
    from twinscan.lab.netns import down, resolve_prefix

    removed = down(prefix)
    name = resolve_prefix(prefix)
    if removed:
        typer.echo(f"lab {name!r} down: removed {', '.join(removed)}")
    else:
        typer.echo(f"lab {name!r} was not up")


@lab_app.command("status")
@funnel
def status_cmd(
    prefix: PrefixOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the status as JSON")] = False,
) -> None:
    """Show whether the lab is up, and each host's namespace and services."""
    from twinscan.lab.netns import status

    info = status(prefix)
    if as_json:
        typer.echo(json.dumps(info, indent=2, sort_keys=True))
        return
    typer.echo(f"lab {info['prefix']!r}: {info['status']}")
    for name, host in sorted(info.get("hosts", {}).items(), key=lambda kv: _by_address(kv[1])):
        ok = host["namespace_present"] and host["services_running"]
        where = host["namespace"] or "silent"
        typer.echo(f"  {name:<8} {host['address']:<15} {where:<20} {'ok' if ok else 'BROKEN'}")
    if info["status"] == "stale":
        typer.echo(f"  leftover namespaces: {', '.join(info['namespaces'])} (twinscan lab down)")
    if info["status"] != "up" and info["status"] != "down":
        raise typer.Exit(1)


@lab_app.command("truth")
@funnel
def truth_cmd(
    csv: Annotated[Path, typer.Option("--csv", help="write the truth table here ('-' = stdout)")],
    spec: SpecOpt = None,
    ipv6: Annotated[
        bool,
        typer.Option("-6", "--ipv6", help="also the hosts' IPv6 addresses (a dual-stack lab)"),
    ] = False,
) -> None:
    """Write the expected nmap verdict of every (host, proto, port, technique) of the spec."""
    from twinscan.core.errors import UsageError
    from twinscan.core.wording import count
    from twinscan.formats.csv import write_csv
    from twinscan.formats.outpaths import check_output_paths
    from twinscan.lab.spec import load_spec
    from twinscan.lab.truth import truth_frame

    check_output_paths({"--csv": csv})
    lab = load_spec(spec)
    hosts = None
    if ipv6:
        if lab.subnet6 is None:
            raise UsageError("-6: this lab spec has no [lab] subnet6 (it is IPv4-only)")
        hosts = [h.address for h in lab.hosts] + [h.address6 for h in lab.hosts if h.address6]
    frame = truth_frame(lab, hosts=hosts)
    if str(csv) == "-":
        write_csv(frame, sys.stdout)
    else:
        write_csv(frame, csv)
        typer.echo(f"{count(len(frame), 'truth row')} -> {csv}", err=True)


@lab_app.command(
    "exec",
    context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
)
@funnel
def exec_cmd(
    command: Annotated[list[str], typer.Argument(help="command and its arguments (after --)")],
    prefix: PrefixOpt = None,
) -> None:
    """Run a command inside the lab's scanner namespace; exit with its exit code."""
    from twinscan.lab.netns import exec_in_scanner

    code = exec_in_scanner(list(command), prefix)
    raise typer.Exit(code)
