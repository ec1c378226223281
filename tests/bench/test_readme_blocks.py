"""The README's generated ``results:NAME`` blocks: the text functions, the renderers, and that
README.md, ``benchmarks/results/NAME.md`` and the renderer's output from ``NAME.csv`` agree (a
figure typed by hand into the README, or a stale ``.md``, fails here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import REPO
from twinscan.bench import results_md
from twinscan.bench.readme_blocks import block_names, read_block, replace_block, update_readme
from twinscan.bench.results_md import BLOCKS

README = REPO / "README.md"
RESULTS = REPO / "benchmarks" / "results"

B, E = "<!-- results:x:begin -->", "<!-- results:x:end -->"

# --- replace_block --------------------------------------------------------------------------------

REPLACE_CASES = [
    ("empty block", f"a\n{B}\n{E}\nz\n", "body\n", f"a\n{B}\nbody\n{E}\nz\n"),
    ("old body replaced", f"a\n{B}\nold\nolder\n{E}\nz\n", "new\n", f"a\n{B}\nnew\n{E}\nz\n"),
    ("newline added", f"{B}\nold\n{E}", "new", f"{B}\nnew\n{E}"),
    ("emptied", f"{B}\nold\n{E}\n", "", f"{B}\n{E}\n"),
    ("other blocks kept", f"{B}\n1\n{E}\n<!-- results:y:begin -->\n2\n<!-- results:y:end -->\n",
     "3\n", f"{B}\n3\n{E}\n<!-- results:y:begin -->\n2\n<!-- results:y:end -->\n"),
    ("note and blank lines", f"{B}\n{E}\n", "<!-- by cmd -->\n\n| t |\n\n",
     f"{B}\n<!-- by cmd -->\n\n| t |\n\n{E}\n"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "body", "want"),
    [c[1:] for c in REPLACE_CASES],
    ids=[c[0] for c in REPLACE_CASES],
)
def test_replace_block(text: str, body: str, want: str) -> None:
    got = replace_block(text, "x", body)
    assert got == want
    assert read_block(got, "x") == (body if not body or body.endswith("\n") else body + "\n")
    assert replace_block(got, "x", body) == got


REFUSED = [
    ("no markers", "text\n", "missing"),
    ("no end marker", f"{B}\nbody\n", "missing"),
    ("no begin marker", f"body\n{E}\n", "missing"),
    ("begin twice", f"{B}\n{B}\n{E}\n", "2 times"),
    ("end twice", f"{B}\n{E}\n{E}\n", "2 times"),
    ("end before begin", f"{E}\n{B}\n", "before"),
    ("markers on one line", f"{B}{E}\n", "lines of their own"),
    ("text after the begin marker", f"{B} x\n{E}\n", "lines of their own"),
    ("text before the end marker", f"{B}\nx {E}\n", "lines of their own"),
    ("another block's markers only", "<!-- results:xy:begin -->\n<!-- results:xy:end -->\n",
     "missing"),
]  # fmt: skip


@pytest.mark.parametrize(("text", "why"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_replace_block_refuses(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        replace_block(text, "x", "body\n")
    with pytest.raises(ValueError, match=why):
        read_block(text, "x")


@pytest.mark.parametrize("name", ["", "a b", "a:b", "a-->", "x\n"])
def test_bad_names_refused(name: str) -> None:
    with pytest.raises(ValueError, match="not a block name"):
        replace_block(f"{B}\n{E}\n", name, "")


def test_block_names() -> None:
    text = (
        f"{B}\n{E}\n<!-- results:y_2-z:begin -->\n<!-- results:y_2-z:end -->\n<!-- bench:begin -->"
    )
    assert block_names(text) == ["x", "y_2-z"]


def test_update_readme(tmp_path: Path) -> None:
    path = tmp_path / "README.md"
    path.write_text(f"# t\n\n{B}\nold\n{E}\n\nend\n", encoding="utf-8")
    update_readme(path, "x", "new\n")
    assert path.read_text(encoding="utf-8") == f"# t\n\n{B}\nnew\n{E}\n\nend\n"
    with pytest.raises(ValueError, match="missing"):
        update_readme(path, "nope", "new\n")


# --- the README against benchmarks/results ----------------------------------------------------


def test_readme_blocks_are_the_rendered_results() -> None:
    """Every ``results:NAME`` block is ``NAME.md``, and every block meant for the README is in it."""
    text = README.read_text(encoding="utf-8")
    names = block_names(text)
    assert sorted(names) == sorted(n for n, b in BLOCKS.items() if b.in_readme)
    for name in names:
        md = (RESULTS / f"{name}.md").read_text(encoding="utf-8")
        assert read_block(text, name) == md, (
            f"README's results:{name} block is not benchmarks/results/{name}.md: "
            f"run `{BLOCKS[name].command}`"
        )


@pytest.mark.parametrize("name", list(BLOCKS))
def test_md_is_what_the_renderer_makes_of_the_csv(name: str) -> None:
    block = BLOCKS[name]
    want = block.markdown((RESULTS / f"{name}.csv").read_text(encoding="utf-8"))
    got = (RESULTS / f"{name}.md").read_text(encoding="utf-8")
    assert got == want, f"benchmarks/results/{name}.md is stale: run `{block.command}`"
    assert got.startswith(block.note() + "\n")


def test_publish(tmp_path: Path) -> None:
    csv = tmp_path / "icmp_ratelimit.csv"
    csv.write_bytes((RESULTS / "icmp_ratelimit.csv").read_bytes())
    readme = tmp_path / "README.md"
    readme.write_text(
        "x\n<!-- results:icmp_ratelimit:begin -->\nold 1.0 s\n<!-- results:icmp_ratelimit:end -->\n"
    )
    md = results_md.publish("icmp_ratelimit", csv, readme)
    assert md == tmp_path / "icmp_ratelimit.md"
    assert read_block(readme.read_text(), "icmp_ratelimit") == md.read_text()
    assert "old 1.0 s" not in readme.read_text()


def test_icmp_script_renders_without_scanning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks.bench_icmp_ratelimit import main

    (tmp_path / "r.csv").write_bytes((RESULTS / "icmp_ratelimit.csv").read_bytes())
    assert main(["--render-only", "--out", str(tmp_path / "r")]) == 0
    assert (tmp_path / "r.md").read_text() == (RESULTS / "icmp_ratelimit.md").read_text()


# --- the renderers --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "places", "want"),
    [("2.645", 2, "2.65"), (2.645, 2, "2.65"), ("250.5", 0, "251"), ("9.85", 1, "9.9"),
     ("0.114", 2, "0.11"), (1.0, 2, "1.00"), ("72", 1, "72.0"), (1 / 3, 3, "0.333")],
)  # fmt: skip
def test_num_rounds_half_up_from_the_decimal_text(
    value: str | float, places: int, want: str
) -> None:
    assert results_md.num(value, places) == want


@pytest.mark.parametrize(
    ("new", "old", "want"), [(152.6, 130.6, "+17%"), (100.0, 100.0, "+0%"), (90.0, 100.0, "-10%")]
)
def test_pct(new: float, old: float, want: str) -> None:
    assert results_md.pct(new, old) == want


MEMORY_CSV = """tool,hosts,ports,probes,wall_s,peak_rss_mib,peak_pss_mib,exit
twinscan,1,65535,65535,1.00,100.0,50.0,0
twinscan-dask,1,65535,65535,2.00,250.0,150.0,0
nmap,1,65535,65535,1.50,20.0,18.0,0
twinscan,4,65535,262140,3.00,150.0,80.0,0
twinscan-dask,4,65535,262140,4.00,300.0,200.0,0
nmap,4,65535,262140,3.50,40.0,38.0,0
"""


def test_memory_growth_figures_come_from_the_csv() -> None:
    out = results_md.memory_growth(MEMORY_CSV)
    assert "| 4 (262,140 probes) | 3.0 s, 150 MiB (80) | 4.0 s, 300 MiB (200) | 3.5 s, 40 MiB (38) |" in out  # fmt: skip
    flat = " ".join(out.split())
    assert "150 MiB at 4 hosts against 100 MiB at one host (+50%)" in flat
    assert "nmap stays smaller still (20-40 MiB)" in flat
    assert "150 MiB more than the plain scan at one host" in flat
    assert "250 MiB at one host, 300 MiB at 4 hosts" in flat
    assert "slower at every size" in flat
    faster = MEMORY_CSV.replace("twinscan-dask,4,65535,262140,4.00", "twinscan-dask,4,65535,262140,2.00")  # fmt: skip
    assert "slower at every size" not in results_md.memory_growth(faster)
    no_nmap = "\n".join(line for line in MEMORY_CSV.splitlines() if not line.startswith("nmap"))
    out = results_md.memory_growth(no_nmap)
    assert "| 1 (65,535 probes) | 1.0 s, 100 MiB (50) | 2.0 s, 250 MiB (150) | - |" in out
    assert "nmap" not in out.split("\n\n")[1]


AUDIT_CSV = """measured,cpus,load,technique,run,scan_s,audit_s,ratio
2026-01-02 03:04 UTC,4,0.50,-sT,1,1.000,1.100,1.100
2026-01-02 03:04 UTC,4,0.50,-sT,2,2.000,1.900,0.950
2026-01-02 03:04 UTC,4,0.50,-sT,3,1.500,1.800,1.200
"""


@pytest.mark.parametrize("with_median", [False, True])
def test_audit_overhead(with_median: bool) -> None:
    text = AUDIT_CSV + ("2026-01-02 03:04 UTC,4,0.50,-sT,median,1.500,1.800,1.100\n" if with_median else "")  # fmt: skip
    out = " ".join(results_md.audit_overhead(text).split())
    assert "scan 1.500 s, audit 1.800 s, median ratio **1.100x** (0.95-1.20 over 3 pairs;" in out
    assert "measured 2026-01-02 03:04 UTC on 4 CPUs (load 0.50)" in out
    assert "`sudo .venv/bin/python benchmarks/bench_audit.py --runs 3 --technique T`" in out
    assert "(loopback, `-sT`," in out


ICMP_CSV = """icmp_ratelimit_ms,ports,silent,burst,floor_s,time_s,ratio,right,total
0,30,0,6,0.0,0.50,,30,30
100,30,0,6,2.4,3.00,1.25,30,30
100,30,0,6,2.4,4.00,1.67,29,30
100,30,0,6,2.4,5.00,2.08,30,30
"""


def test_icmp_ratelimit() -> None:
    lines = results_md.icmp_ratelimit(ICMP_CSV).splitlines()
    assert "floor (closed - 6) x interval" in lines[0]
    assert "(median of 1-3 runs)" in lines[0]
    assert lines[2] == "| off (baseline) | 30 + 0 | 0.0 s | 0.5 s | - | 30/30 |"
    assert lines[3] == "| 100 ms | 30 + 0 | 2.4 s | 4.0 s | 1.67x | 89/90 |"


DETECT_CSV = """date,tool,packets,bytes,median_s,min_s,runs,cpu,command
2026-01-01,twinscan detect,1000,9,3.500,3.000,3,x86_64 x2,twinscan detect f.pcap
2026-01-01,tcpdump -r -w /dev/null,1000,9,0.100,0.100,3,x86_64 x2,tcpdump -r f.pcap -w /dev/null
2026-02-01,twinscan detect,1002008,9,2.645,2.376,5,aarch64 x8,twinscan detect g.pcap
"""


def test_detect_speed_takes_each_tools_latest_row() -> None:
    out = results_md.detect_speed(DETECT_CSV)
    assert "| `twinscan detect g.pcap` | 1,002,008 | 2.65 s | 2.38 s | 5 |" in out
    assert "| `tcpdump -r f.pcap -w /dev/null` | 1,000 | 0.10 s | 0.10 s | 3 |" in out
    assert "f.pcap` | 1,000 | 3.50" not in out
    flat = " ".join(out.split())
    assert "Measured 2026-02-01 on an 8-core aarch64 machine" in flat
    assert "--repeat 5" in flat
    assert "reads the 1,002,008 packets in under the 3 s target (2.65 s median)" in flat
    slow = results_md.detect_speed("\n".join(DETECT_CSV.splitlines()[:3]))
    assert "in more than the 3 s target (3.50 s median)" in " ".join(slow.split())


def test_ipv6() -> None:
    text = """# benchmarks/bench_ipv6.py, 2026-01-02 03:04 UTC
workload,family,run,seconds,peak_rss_mib
w,ipv4,0,1.0,60.0
w,ipv6,0,1.2,60.0
w,ipv4,1,3.0,60.0
w,ipv6,1,0.8,60.0
w,ipv4,2,2.0,60.0
w,ipv6,2,1.0,60.0
w peak RSS,ipv4,0,,61.8
w peak RSS,ipv6,0,,61.6
"""
    out = results_md.ipv6(text)
    assert out.startswith("Measured 2026-01-02 03:04 UTC with")
    assert "| w | 2.000 s | 1.000 s | 0.50x | 3 + 3 |" in out
    assert "| w peak RSS | 61.8 MiB | 61.6 MiB | 1.00x | 1 + 1 |" in out


@pytest.mark.parametrize(
    "text",
    [
        "a " * 80 + "- b " + "c " * 60,
        "x " * 48 + "1. y " + "z " * 60,
        "w " * 49 + "| v " + "u " * 60,
        "w " * 49 + "# v " + "u " * 60,
    ],
)
def test_prose_never_starts_a_line_markdown_would_misread(text: str) -> None:
    lines = results_md.prose(text).splitlines()
    assert len(lines) > 1
    assert not any(results_md.BLOCK_START.match(line) for line in lines[1:])
    assert " ".join(lines) == " ".join(text.split())


# --- phases.csv -----------------------------------------------------------------------------------

_TW_MARKS = [
    ("twinscan.cli imported", 40),
    ("options parsed", 50),
    ("targets, ports and plan checked", 60),
    ("syn: engine starts", 62),
    ("syn: sockets open, probing starts", 80),
    ("syn: probing done", 100),
    ("command returned", 104),
    ("exit", 110),
]


def _phases_csv(shift: float) -> str:
    """Runs 0 and 1 of twinscan (run 1 every mark ``shift`` ms later) and of nmap (90, 94 ms)."""
    lines = ["# benchmarks/bench_phases.py --runs 2, 2026-12-01 04:00 UTC, 2 CPUs",
             "workload,tool,run,mark,ms"]  # fmt: skip
    for run, extra in ((0, 0.0), (1, shift)):
        lines += [f'1000-port SYN,twinscan,{run},"{m}",{ms + extra}' for m, ms in _TW_MARKS]
        lines.append(f"1000-port SYN,nmap,{run},exit,{90 + 4 * run}")
    return "\n".join(lines) + "\n"


def test_phases_renders_medians_per_phase_and_the_ratio() -> None:
    out = results_md.phases(_phases_csv(shift=2.0))
    table = {
        line.split(" | ")[0].lstrip("| "): line.split(" | ")[1].rstrip(" |")
        for line in out.splitlines()
        if line.startswith("| ")
    }
    assert table["start-up: Python, imports, options parsed"] == "51.0"  # 50, 52
    assert table["targets, ports, safety check, output plan"] == "10.0"
    assert table["engine set-up: templates, probe plan, sockets"] == "20.0"
    assert table["probing: first probe to last verdict"] == "20.0"
    assert table["exit: from the command's return to the process's end"] == "6.0"
    assert table["**twinscan, whole process**"] == "**111**"  # 110, 112
    assert table["nmap `-T4`, whole process"] == "92.0"
    assert table["twinscan / nmap"] == "1.21"  # 111 / 92
    words = " ".join(out.split())  # the prose is wrapped
    assert "Measured 2026-12-01 04:00 UTC on 2 CPUs" in words
    assert "spends 81.0 ms before its first probe, against 20.0 ms of probing" in words


def test_phases_skips_runs_without_every_mark() -> None:
    broken = _phases_csv(shift=0.0).replace("syn: probing done", "syn: something else")
    assert results_md.phases(broken) == "No complete run in the CSV.\n"
