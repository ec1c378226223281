"""``twinscan bench``: run the benchmark harness (``twinscan.bench``) and say where results went."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twinscan.cli.base import app, funnel


@app.command()
@funnel
def bench(
    what: Annotated[
        str | None,
        typer.Argument(
            help="`detect`: the scan-detection matrix instead of the speed benchmark",
            show_default=False,
        ),
    ] = None,
    quick: Annotated[
        bool, typer.Option("--quick", help="small workloads, two pairs each: a smoke check")
    ] = False,
    out: Annotated[
        Path | None,
        typer.Option(
            "--out",
            help="results directory [default: benchmarks/results, or out/bench-quick with --quick]",
            show_default=False,
        ),
    ] = None,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="run workloads whose name contains this (repeatable)"),
    ] = None,
    engine: Annotated[
        list[str] | None,
        typer.Option("--engine", help="twinscan, twinscan-nmap, nmap, masscan (repeatable)"),
    ] = None,
    pairs: Annotated[
        int | None, typer.Option("--pairs", min=1, help="measured pairs per workload")
    ] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", min=1, help="cap every run at this many seconds")
    ] = None,
    spec: Annotated[
        Path | None,
        typer.Option("--spec", help="bench lab spec [default: fixtures/labs/bench.toml]"),
    ] = None,
    readme: Annotated[
        Path | None,
        typer.Option(
            "--readme",
            help="rewrite this README's bench block [default: the repo's README.md on a "
            "full run with the default --out; never with --quick]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Benchmark twinscan against nmap and masscan on loopback and the bench lab (needs root).

    `twinscan bench detect` runs the detection matrix instead: scans of every technique and
    pace in the lab, captured at the target, fed to every detector and to the real scanlogd.
    """
    if what is not None:
        _bench_detect(what, quick, out, spec)
        return
    from twinscan.bench.harness import (
        BenchConfig,
        default_out_dir,
        parse_engines,
        repo_root,
        run_bench,
    )

    full_default = not quick and out is None and not only and not engine
    if readme is None and full_default and (repo_root() / "README.md").is_file():
        readme = repo_root() / "README.md"
    config = BenchConfig(
        out_dir=out or default_out_dir(quick=quick),
        quick=quick,
        spec_path=spec,
        readme=readme,
        only=tuple(only or ()),
        engines=parse_engines(engine or ()),
        pairs=pairs,
        timeout_s=timeout,
        command=_command(quick, out, only, engine, pairs, spec, timeout),
    )
    outcome = run_bench(config, log=lambda line: typer.echo(line, err=True))
    typer.echo(outcome.summary_md.read_text())
    for path in (outcome.runs_csv, outcome.summary_csv, outcome.summary_md, outcome.plot_png):
        if path is not None:
            typer.echo(f"wrote {path}", err=True)


def _command(
    quick: bool,
    out: Path | None,
    only: list[str] | None,
    engine: list[str] | None,
    pairs: int | None,
    spec: Path | None,
    timeout: float | None = None,
) -> str:
    """The command line that reproduces this run (recorded with the results)."""
    parts = ["twinscan", "bench"] + (["--quick"] if quick else [])
    parts += [f"--only {o}" for o in only or ()] + [f"--engine {e}" for e in engine or ()]
    if pairs is not None:
        parts.append(f"--pairs {pairs}")
    if timeout is not None:
        parts.append(f"--timeout {timeout:g}")
    if spec is not None:
        parts.append(f"--spec {spec}")
    if out is not None:
        parts.append(f"--out {out}")
    return " ".join(parts)


def _bench_detect(what: str, quick: bool, out: Path | None, spec: Path | None) -> None:
    from twinscan.bench.detect_matrix import run_matrix
    from twinscan.bench.harness import repo_root
    from twinscan.core.errors import UsageError

    if what != "detect":
        raise UsageError(f"unknown benchmark {what!r} (the only one is `detect`)")
    root = repo_root()
    out_default = out is None and (root / "README.md").is_file()
    if out is None:
        base = root if (root / "benchmarks").is_dir() else Path()
        out = base / "out" / "detect-quick" if quick else base / "benchmarks" / "results"
    parts = ["twinscan", "bench", "detect"] + (["--quick"] if quick else [])
    if spec is not None:
        parts.append(f"--spec {spec}")
    readme = root / "README.md" if not quick and out_default else None
    csv_path, md_path = run_matrix(
        out, quick=quick, spec_path=spec, command=" ".join(parts), readme=readme,
        log=lambda line: typer.echo(line, err=True),
    )  # fmt: skip
    typer.echo(md_path.read_text())
    typer.echo(f"wrote {csv_path}", err=True)
    typer.echo(f"wrote {md_path}", err=True)
