"""``cli.scan_fast``: a ``scan`` command line read without typer gives what typer gives, or
nothing (typer then reads it); its option table is the typer command's."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from twinscan.cli import app, scan_fast
from twinscan.cli import scan as scan_command
from twinscan.cli.scan_spec import SPEC


def test_the_table_is_the_typer_command() -> None:
    assert scan_fast.spec_source() == scan_fast.SPEC_PATH.read_text(encoding="utf-8"), (
        "cli/scan_spec.py is stale: run `python -m twinscan.cli.scan_fast`"
    )


def _typer_reads(argv: list[str]) -> tuple[Any, dict[str, Any]] | None:
    """What typer hands ``run_scan_command`` for ``scan ARGV``, or None when it refuses it."""
    seen: list[tuple[Any, dict[str, Any]]] = []

    def capture(opts: Any, **own: Any) -> None:
        seen.append((opts, own))

    saved = scan_command.run_scan_command
    scan_command.run_scan_command = capture  # type: ignore[assignment]
    try:
        result = CliRunner().invoke(app, ["scan", *argv])
    finally:
        scan_command.run_scan_command = saved
    if result.exit_code != 0 or not seen:
        return None
    return seen[0]


def _same(fast: Any, typer_read: Any) -> bool:
    """Equal values of equal types (by ``repr``: ``--min-rate nan`` is nan on both sides, and
    nan != nan)."""
    return typer_read is not None and repr(fast) == repr(typer_read)


# --- command lines ------------------------------------------------------------------------------

_TEXT = st.text(st.sampled_from("abz09-_.,:/*T=U"), min_size=0, max_size=8)
_VALUES: dict[str, st.SearchStrategy[str]] = {
    "str": _TEXT,
    "path": _TEXT.filter(bool),
    "int": st.integers(-3, 99999).map(str) | st.sampled_from(["x", "1_0", " 7", "1.5"]),
    "int>=0": st.integers(-3, 50).map(str) | st.sampled_from(["x", "2_0"]),
    "float": st.floats(allow_nan=True, allow_infinity=True).map(repr)
    | st.sampled_from(["1e3", "inf", "nan", "x", "5"]),
}


def _value(value_type: str) -> st.SearchStrategy[str]:
    if value_type.startswith("choice:"):
        choices = value_type.removeprefix("choice:").split("|")
        return st.sampled_from([*choices, "NMAP", "x", ""])
    return _VALUES[value_type]


@st.composite
def _token_groups(draw: st.DrawFn) -> list[str]:
    """One option (in one of the spellings click takes) or one positional argument."""
    name, opts, kind, value_type, _default = draw(st.sampled_from(SPEC))
    if kind == "arguments":
        return [draw(_TEXT.filter(lambda t: not t.startswith("-")))]
    opt = draw(st.sampled_from(opts))
    if kind in ("flag", "count"):
        letters = [o[1] for _, os_, k, _, _ in SPEC if k in ("flag", "count")
                   for o in os_ if len(o) == 2]  # fmt: skip
        if len(opt) == 2 and draw(st.booleans()):
            more = draw(st.lists(st.sampled_from(letters), max_size=3))
            return [opt + "".join(more)]  # -vv, -rF
        return [opt]
    value = draw(_value(value_type))
    spellings = [[opt, value]]
    if len(opt) == 2:
        spellings.append([opt + value])  # -sS, -T4, -p-
    if opt.startswith("--"):
        spellings.append([f"{opt}={value}"])
    return draw(st.sampled_from(spellings))


command_lines = st.lists(_token_groups(), max_size=7).map(lambda gs: [t for g in gs for t in g])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(argv=command_lines)
def test_a_command_line_reads_as_typer_reads_it_or_goes_to_typer(argv: list[str]) -> None:
    fast = scan_fast.parse(argv)
    if fast is None:
        return  # typer reads it (and refuses it, or not), as before
    assert _same(fast, _typer_reads(argv)), argv


@given(argv=st.lists(st.text(max_size=6), max_size=5))
@settings(max_examples=150, deadline=None)
def test_any_argument_list_reads_as_typer_reads_it_or_goes_to_typer(argv: list[str]) -> None:
    fast = scan_fast.parse(argv)
    if fast is not None:
        assert _same(fast, _typer_reads(argv)), argv


COMMON = [
    ["-sS", "-p", "1-1000", "127.0.0.1"],
    ["-sS", "-T4", "-p-", "127.0.0.1", "--csv", "/dev/null"],
    ["-sSU", "-p", "T:22,U:53", "-Pn", "-n", "--reason", "127.0.0.1", "-oX", "out.xml"],
    ["-s", "all", "-p", "well-known", "-vv", "::1", "-6", "--show-closed"],
    ["-sT", "--top-ports", "100", "--max-retries=2", "--min-rate", "100", "127.0.0.1-5"],
    ["-sU", "-F", "-r", "--engine", "nmap", "--json", "-", "127.0.0.1", "--debug-timing"],
    ["--resume", "scan.ckpt", "--csv", "a.csv"],
]


@pytest.mark.parametrize("argv", COMMON, ids=[" ".join(a) for a in COMMON])
def test_the_common_command_lines_are_read_without_typer(argv: list[str]) -> None:
    fast = scan_fast.parse(argv)
    assert fast is not None
    assert _same(fast, _typer_reads(argv))


DECLINED = [
    ["-h"],
    ["--help"],
    ["-sS", "--", "127.0.0.1"],
    ["-p=80", "127.0.0.1"],
    ["--bogus", "127.0.0.1"],
    ["--max-retries", "-1", "127.0.0.1"],
    ["--engine", "NMAP", "127.0.0.1"],
    ["--top-ports", "many", "127.0.0.1"],
    ["-vp80", "127.0.0.1"],
    ["--csv"],
    ["--owners=yes"],
    ["-"],
]


@pytest.mark.parametrize("argv", DECLINED, ids=[" ".join(a) for a in DECLINED])
def test_what_it_does_not_read_exactly_goes_to_typer(argv: list[str]) -> None:
    assert scan_fast.parse(argv) is None


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinscan", "scan", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "200"},
    )


def test_errors_read_the_same_with_and_without_typer() -> None:
    """One line and the error's exit code on both paths (``--`` sends a line to typer)."""
    fast = _run("-sT", "-p", "80", "203.0.113.9")
    typer_path = _run("-sT", "-p", "80", "--", "203.0.113.9")
    assert fast.returncode == typer_path.returncode == 2
    assert fast.stderr == typer_path.stderr
    assert fast.stderr.startswith("twinscan: error: refusing to scan 203.0.113.9")
    assert fast.stdout == typer_path.stdout == ""


def test_a_scan_reports_the_same_with_and_without_typer(tmp_path: Path) -> None:
    fast = _run("-sT", "-p", "1-20", "127.0.0.1", "--csv", str(tmp_path / "a.csv"), "-r")
    typer_path = _run(
        "-sT", "-p", "1-20", "--csv", str(tmp_path / "b.csv"), "-r", "--", "127.0.0.1"
    )
    assert fast.returncode == typer_path.returncode == 0, fast.stderr + typer_path.stderr

    def rows(path: Path) -> list[str]:  # the RTT column varies run to run
        return [line.rsplit(",", 3)[0] for line in path.read_text().splitlines()]

    assert rows(tmp_path / "a.csv") == rows(tmp_path / "b.csv")
    assert fast.stdout.splitlines()[:-1] == typer_path.stdout.splitlines()[:-1]  # not the time
