"""``twinscan who PORT[/PROTO]``: which local process listens on a port (like ``lsof -i:PORT``)."""

from __future__ import annotations

from typing import Annotated

import typer

from twinscan.cli.base import app, funnel
from twinscan.core.errors import UsageError
from twinscan.core.vocab import Proto


def parse_port_proto(text: str) -> tuple[int, tuple[Proto, ...]]:
    """``8080`` -> (8080, (tcp, udp)); ``53/udp`` -> (53, (udp,))."""
    port_s, slash, proto_s = text.strip().partition("/")
    if not port_s.isdigit() or not 0 <= int(port_s) <= 65535:
        raise UsageError(f"bad port {text!r}: expected PORT or PORT/tcp or PORT/udp (0-65535)")
    if not slash:
        return int(port_s), (Proto.TCP, Proto.UDP)
    try:
        return int(port_s), (Proto(proto_s.lower()),)
    except ValueError:
        raise UsageError(f"bad protocol {proto_s!r}: use tcp or udp") from None


@app.command()
@funnel
def who(
    port: Annotated[str, typer.Argument(help="PORT, PORT/tcp or PORT/udp", metavar="PORT[/PROTO]")],
) -> None:
    """Show the local process(es) listening on PORT: address, protocol, PID, user, command line.

    Read-only. Exit status 0 when something listens, 1 when nothing does.
    """
    from twinscan.local.owners import listeners, nothing_listens, one_line

    number, protos = parse_port_proto(port)
    found = listeners(number, protos)
    if not found:
        typer.echo(nothing_listens(number, protos))
        raise typer.Exit(1)
    rows: list[tuple[str, ...]] = [("COMMAND", "PID", "USER", "PROTO", "ADDRESS", "CMDLINE")]
    for o in found:
        cells = (
            o.process or "?",
            str(o.pid) if o.pid is not None else "?",
            o.user or "?",
            o.proto.value.upper(),
            o.endpoint + (" (LISTEN)" if o.proto is Proto.TCP else ""),
            o.cmdline or "",
        )
        # One row per socket, whatever a process put in its name or command line.
        rows.append(tuple(one_line(c) for c in cells))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        typer.echo(
            "  ".join(cell.ljust(w) for cell, w in zip(r[:5], widths, strict=True)) + "  " + r[5]
        )
    if any(o.pid is None for o in found):
        typer.echo(f"(? = {_why_hidden()})", err=True)


def _why_hidden() -> str:
    import os

    if os.geteuid() != 0:
        return "process not visible: run as root to see other users' processes"
    return "process not visible from here (it may live in another PID namespace)"
