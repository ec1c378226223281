"""``twinscan version`` and ``twinscan import-nmap``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinscan import __version__
from twinscan.cli.base import app, funnel


@app.command()
def version() -> None:
    """Print twinscan's version and the versions of the engines it drives."""
    import shutil
    import subprocess

    typer.echo(f"twinscan {__version__}")
    nmap = shutil.which("nmap")
    if nmap:
        out = subprocess.run([nmap, "--version"], capture_output=True, text=True, timeout=10)
        first = out.stdout.splitlines()[0] if out.stdout else "unknown"
        typer.echo(first)
    else:
        typer.echo("nmap: not installed (apt-get install nmap, or `make setup`)")


@app.command("import-nmap")
@funnel
def import_nmap(
    files: Annotated[list[Path], typer.Argument(help="nmap -oX files", show_default=False)],
    csv: Annotated[
        Path | None, typer.Option("--csv", help="write the normalized rows here ('-' = stdout)")
    ] = None,
) -> None:
    """Normalize nmap XML into twinscan's schema: one row per scanned port, extraports expanded."""
    import sys

    import pandas as pd

    from twinscan.formats.nmap_xml_read import read_nmap_xml_file
    from twinscan.formats.outpaths import check_output_paths

    check_output_paths({"--csv": csv})
    from twinscan.core.schema import conform
    from twinscan.formats.csv import write_csv

    frames = [read_nmap_xml_file(f).frame for f in files]
    frame = conform(pd.concat(frames, ignore_index=True))
    if csv is None or str(csv) == "-":
        write_csv(frame, sys.stdout)
    else:
        write_csv(frame, csv)
        typer.echo(f"{len(frame)} rows from {len(files)} file(s) -> {csv}", err=True)
