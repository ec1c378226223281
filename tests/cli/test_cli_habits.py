"""What a new user types in the first hour: nmap habits, output paths, bad targets (issue #10).

Every test runs the real ``twinscan`` entry point in a subprocess against loopback only.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest

from twinscan.cli.options import nmap_only_hint
from twinscan.core.errors import TargetError, UsageError
from twinscan.core.timing import parse_level
from twinscan.formats.outpaths import check_output_paths
from twinscan.request.targets import expand_targets, read_target_file

TWINSCAN = [sys.executable, "-m", "twinscan"]


def run(
    *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TWINSCAN, *args], capture_output=True, text=True, input=stdin, timeout=timeout
    )


def one_line_error(proc: subprocess.CompletedProcess[str], code: int = 2) -> str:
    assert proc.returncode == code, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    assert lines[0].startswith("twinscan: error: ")
    return lines[0]


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


# --- output paths are checked before scanning (item 4) ------------------------------------


@pytest.mark.parametrize(
    "argv",
    [
        ["scan", "-sT", "-p", "1-5", "127.0.0.1", "--csv", "{d}"],
        ["scan", "-sT", "-p", "1-5", "127.0.0.1", "--json", "{d}"],
        ["scan", "-sT", "-p", "1-5", "127.0.0.1", "-oX", "{d}"],
        ["scan", "-sT", "-p", "1-5", "127.0.0.1", "-oN", "{d}"],
        ["compare", "-sT", "-p", "1-5", "127.0.0.1", "--csv", "{d}"],
        ["compare", "-sT", "-p", "1-5", "127.0.0.1", "--html", "{d}"],
        ["compare", "-sT", "-p", "1-5", "127.0.0.1", "--xml-dir", "{f}"],
        ["diff", "{f}", "{f}", "--csv", "{d}"],
        ["lab", "truth", "--csv", "{d}"],
        ["import-nmap", "{f}", "--csv", "{d}"],
    ],
)
def test_unusable_output_path_refused_before_work(argv: list[str], tmp_path: Path) -> None:
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    args = [a.format(d=tmp_path, f=a_file) for a in argv]
    line = one_line_error(run(*args))
    assert str(tmp_path) in line or str(a_file) in line


def test_missing_output_directory_is_created_and_scan_kept(tmp_path: Path) -> None:
    out = tmp_path / "no" / "dir" / "x.csv"
    proc = run("scan", "-sT", "-p", "1-3", "127.0.0.1", "--csv", str(out))
    assert proc.returncode == 0, proc.stderr
    assert [r["port"] for r in csv_rows(out.read_text())] == ["1", "2", "3"]


def test_two_outputs_to_stdout_refused() -> None:
    with pytest.raises(UsageError, match="only one output"):
        check_output_paths({"--csv": "-", "--json": "-"})


def test_same_file_twice_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="both write"):
        check_output_paths({"--csv": tmp_path / "a", "--json": tmp_path / "a"})


# --- repeated -s flags, engines (item 6) --------------------------------------------------


def test_scan_repeated_and_combined_s_flags() -> None:
    proc = run("scan", "-sT", "-sU", "-p", "T:1-2,U:1-2", "127.0.0.1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert {r["technique"] for r in csv_rows(proc.stdout)} == {"connect", "udp"}
    proc = run("scan", "-sTU", "-p", "T:1-2,U:1-2", "127.0.0.1", "--csv", "-")
    assert {r["technique"] for r in csv_rows(proc.stdout)} == {"connect", "udp"}


@pytest.mark.nmap
def test_compare_runs_every_repeated_s_flag() -> None:
    proc = run("compare", "-sT", "-sU", "-p", "T:1-3,U:1-3", "127.0.0.1", "--csv", "-")
    assert proc.returncode in (0, 1), proc.stderr
    rows = csv_rows(proc.stdout)
    assert {r["technique"] for r in rows} == {"connect", "udp"}
    assert len(rows) == 6


def test_scan_engine_truth_is_not_offered() -> None:
    proc = run("scan", "--engine", "truth", "-p", "1", "127.0.0.1")
    assert proc.returncode == 2
    assert "truth" in proc.stderr and "Traceback" not in proc.stderr


# --- nmap habits (item 7) -----------------------------------------------------------------


def test_noop_habits_accepted() -> None:
    proc = run("scan", "-Pn", "-n", "--reason", "-sT", "-p", "1-2", "127.0.0.1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert len(csv_rows(proc.stdout)) == 2


@pytest.mark.parametrize(
    ("text", "level"),
    [("4", 4), ("aggressive", 4), ("Insane", 5), ("paranoid", 0), (" polite ", 2)],
)
def test_timing_names(text: str, level: int) -> None:
    assert parse_level(text) == level


@pytest.mark.parametrize("bad", ["6", "-1", "fast", ""])
def test_timing_names_bad(bad: str) -> None:
    with pytest.raises(ValueError, match="-T takes"):
        parse_level(bad)


def test_timing_name_on_the_command_line() -> None:
    proc = run("scan", "-T", "aggressive", "-v", "-sT", "-p", "1", "127.0.0.1")
    assert proc.returncode == 0, proc.stderr
    assert "-T4" in proc.stderr
    one_line_error(run("scan", "-T", "warp", "-p", "1", "127.0.0.1"))


def test_fast_is_top_100() -> None:
    proc = run("scan", "-F", "-sT", "127.0.0.1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert len(csv_rows(proc.stdout)) == 100
    one_line_error(run("scan", "-F", "-p", "22", "127.0.0.1"))


def test_open_keeps_only_open_states(tmp_path: Path) -> None:
    import socket

    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        proc = run("scan", "--open", "-sT", "-p", f"1-3,{port}", "127.0.0.1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert [(r["port"], r["state"]) for r in csv_rows(proc.stdout)] == [(str(port), "open")]


def test_input_list_from_stdin() -> None:
    proc = run("scan", "-iL", "-", "-sT", "-p", "1", "--csv", "-", stdin="127.0.0.2\n127.0.0.3\n")
    assert proc.returncode == 0, proc.stderr
    assert [r["host"] for r in csv_rows(proc.stdout)] == ["127.0.0.2", "127.0.0.3"]


def test_octet_wildcard() -> None:
    hosts = expand_targets(["127.0.0.*"])
    assert len(hosts) == 256 and hosts[0] == "127.0.0.0" and hosts[-1] == "127.0.0.255"
    assert len(expand_targets(["127.0.*.1"])) == 256


def test_ipv6_flag() -> None:
    assert expand_targets(["::1"], family=6) == ["::1"]
    with pytest.raises(TargetError, match="not an IPv6 target"):
        expand_targets(["127.0.0.1"], family=6)
    assert expand_targets(["v6name"], family=6, resolve=lambda _: ["127.0.0.1", "::1"]) == ["::1"]
    # Without -6 a name is scanned at its IPv4 address, as nmap does.
    assert expand_targets(["v6name"], resolve=lambda _: ["::1", "127.0.0.1"]) == ["127.0.0.1"]


def test_ipv6_connect_scan_and_raw_refusal() -> None:
    proc = run("scan", "-6", "-sT", "-p", "1", "::1", "--csv", "-")
    assert proc.returncode == 0, proc.stderr
    assert csv_rows(proc.stdout)[0]["host"] == "::1"


def _nmap_formats_ok(base: Path) -> None:
    normal = base.with_suffix(".nmap").read_text()
    grepable = base.with_suffix(".gnmap").read_text()
    assert normal.startswith("# twinscan ") and "scan initiated" in normal
    assert "Nmap scan report for 127.0.0.1" in normal
    assert "Not shown: 3 closed tcp ports" not in normal  # 3 ports are listed, not folded
    assert "PORT" in normal and "1/tcp" in normal and "conn-refused" in normal
    assert "Host: 127.0.0.1 ()\tStatus: Up" in grepable
    assert "1/closed/tcp//tcpmux///" in grepable
    assert grepable.rstrip().splitlines()[-1].startswith("# twinscan done at")
    assert base.with_suffix(".xml").read_text().startswith("<?xml")


def test_output_all_formats(tmp_path: Path) -> None:
    base = tmp_path / "scan"
    proc = run("scan", "-sT", "-p", "1-3", "127.0.0.1", "-oA", str(base))
    assert proc.returncode == 0, proc.stderr
    _nmap_formats_ok(base)


def test_grepable_folds_like_nmap() -> None:
    proc = run("scan", "-sT", "-p", "1-40", "127.0.0.1", "-oG", "-")
    assert proc.returncode == 0, proc.stderr
    host_line = [ln for ln in proc.stdout.splitlines() if "Ports:" in ln][0]
    assert host_line.endswith("\tIgnored State: closed (40)")


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["-sV"], "version detection"),
        (["-sSV"], "version detection"),
        (["-O"], "OS detection"),
        (["-A"], "nmap -A"),
        (["-sC"], "NSE"),
        (["--script=vuln"], "NSE"),
        (["-PS22"], "never pings"),
        (["-sn"], "host discovery"),
    ],
)
def test_nmap_only_options_name_an_alternative(argv: list[str], needle: str) -> None:
    line = one_line_error(run("scan", *argv, "-p", "22", "127.0.0.1"))
    assert needle in line


def test_nmap_only_hint_stops_at_double_dash() -> None:
    assert nmap_only_hint(["--", "-O"]) is None
    assert nmap_only_hint(["-p", "22", "-O"]) is not None


# --- bad targets and files are one line, never a traceback (item 9) ------------------------


@pytest.mark.parametrize("target", ["bad..host", "a" * 70 + ".example", "-bad-.x", "x" * 300])
def test_bad_host_names(target: str) -> None:
    line = one_line_error(run("scan", "-sT", "-p", "1", "--", target))
    assert "not a target" in line


def test_binary_target_file(tmp_path: Path) -> None:
    blob = tmp_path / "blob"
    blob.write_bytes(bytes(range(256)) * 4)
    line = one_line_error(run("scan", "-sT", "-p", "1", "-iL", str(blob)))
    assert str(blob) in line
    latin = tmp_path / "latin"
    latin.write_bytes(b"127.0.0.1 caf\xe9\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        read_target_file(str(latin))


def test_help_lists_shared_options_for_scan_and_compare() -> None:
    env = {**os.environ, "COLUMNS": "200", "TERM": "dumb"}
    outs = []
    for cmd in ("scan", "compare"):
        proc = subprocess.run([*TWINSCAN, cmd, "--help"], capture_output=True, text=True, env=env)
        assert proc.returncode == 0
        outs.append(proc.stdout)
    for option in ("-iL", "--exclude", "-F", "--top-ports", "--scan-delay", "-Pn", "[user:pass@]"):
        assert all(option in out for out in outs), option
