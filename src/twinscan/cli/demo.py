"""``twinscan demo``: the default lab, both engines against its ground truth, files in ./out/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinscan.cli.base import app, funnel


@app.command()
@funnel
def demo(
    out: Annotated[Path, typer.Option("--out", help="where the CSV and HTML go")] = Path("out"),
    scan_types: Annotated[
        str | None,
        typer.Option("-s", help="limit to these scan letters (default: all, b included)"),
    ] = None,
    spec: Annotated[str | None, typer.Option("--spec", help="lab spec (default lab)")] = None,
    timing: Annotated[int, typer.Option("-T", min=0, max=5)] = 4,
) -> None:
    """Bring up the lab, run `compare --truth` over every technique inside it, tear it down."""
    from twinscan.cli.options import parse_letters
    from twinscan.lab.demo import run_demo
    from twinscan.request.build import parse_scan_types

    techniques = parse_scan_types(parse_letters(scan_types)) if scan_types else None

    def say(text: str) -> None:
        typer.echo(text, err=False)

    run_demo(out, spec_path=spec, techniques=techniques, timing=timing, say=say)
