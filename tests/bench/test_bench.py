"""The benchmark harness's pure parts, and its process measurement on a local child process."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from conftest import REPO
from killed_run import run_killed
from twinscan.bench import accuracy, render
from twinscan.bench.measure import run_measured
from twinscan.bench.plan import (
    BenchEngine,
    MasscanAdapter,
    Workload,
    argv_for,
    catalog,
    schedule,
)
from twinscan.core.vocab import Technique
from twinscan.lab import load_spec

REPO = REPO
BENCH_SPEC = REPO / "fixtures" / "labs" / "bench.toml"

# --- plan ---------------------------------------------------------------------------------


def test_schedule_alternates_engines_after_warmup() -> None:
    engines = (BenchEngine.NATIVE, BenchEngine.NMAP)
    slots = schedule(engines, pairs=3, warmup=1)
    assert [s.engine for s in slots] == list(engines) * 4
    assert [s.warmup for s in slots] == [True, True] + [False] * 6
    assert [s.round for s in slots] == [0, 0, 1, 1, 2, 2, 3, 3]


def test_full_catalog_covers_the_issue() -> None:
    work = {w.name: w for w in catalog()}
    assert {"loopback-65k-syn", "loopback-65k-connect"} <= set(work)
    lab_techs = {w.technique for w in work.values() if w.group == "technique"}
    assert lab_techs == set(Technique)
    assert all(w.nports == 10_000 and len(w.hosts) == 2 for w in work.values()
               if w.group == "technique" and w.technique is not Technique.FTP_BOUNCE)  # fmt: skip
    growth = {(len(w.hosts), w.nports) for w in work.values() if w.group == "growth"}
    assert {(1, 1000), (1, 10_000), (1, 65535), (4, 10_000), (16, 10_000)} <= growth
    assert any(w.group == "loss" for w in work.values())
    assert any(w.group == "ratelimit" and w.technique is Technique.UDP for w in work.values())
    for w in work.values():
        assert w.pairs >= 5
        assert (BenchEngine.MASSCAN in w.engines) == (
            w.technique is Technique.SYN and not w.loopback
        )


def test_catalog_hosts_exist_in_the_bench_spec() -> None:
    spec = load_spec(BENCH_SPEC)
    names = {h.name for h in spec.hosts}
    for w in catalog() + catalog(quick=True):
        assert set(w.hosts) <= names, w.name
        assert w.relay is None or w.relay in names


def test_quick_catalog_is_small() -> None:
    quick = catalog(quick=True)
    runs = sum(len(w.engines) * (w.pairs + w.warmup) for w in quick)
    assert runs <= 20 and all(w.nports <= 1000 and w.timeout_s <= 20 for w in quick)


def test_workload_rejects_masscan_outside_lab_syn() -> None:
    with pytest.raises(ValueError, match="masscan"):
        Workload("x", "g", Technique.CONNECT, ("h1",), 10, engines=(BenchEngine.MASSCAN,))
    with pytest.raises(ValueError, match="masscan"):
        Workload("x", "g", Technique.SYN, (), 10, engines=(BenchEngine.MASSCAN,))
    with pytest.raises(ValueError, match="relay"):
        Workload("x", "g", Technique.FTP_BOUNCE, ("h1",), 10)


def test_argv_per_engine_same_options() -> None:
    w = Workload("w", "g", Technique.FIN, ("h1", "h2"), 500)
    targets = ["198.18.4.11", "198.18.4.12"]
    native = argv_for(BenchEngine.NATIVE, w, targets, "o.xml", python="py")
    wrapped = argv_for(BenchEngine.WRAPPED, w, targets, "o.xml", python="py")
    nmap = argv_for(BenchEngine.NMAP, w, targets, "o.xml", python="py")
    assert native == ["py", "-m", "twinscan", "scan", "-sF", "-p", "1-500", "-T4", *targets,
                      "-oX", "o.xml"]  # fmt: skip
    assert wrapped == [*native, "--engine", "nmap"]
    assert nmap == ["nmap", "-n", "-Pn", "--reason", "-sF", "-T4", "-p", "1-500", "-oX", "o.xml",
                    *targets]  # fmt: skip
    syn = Workload("s", "g", Technique.SYN, ("h1",), 100, engines=(BenchEngine.MASSCAN,))
    adapter = MasscanAdapter("m0", "198.18.4.2", "aa:bb:cc:dd:ee:ff", rate=500)
    mass = argv_for(BenchEngine.MASSCAN, syn, ["198.18.4.11"], "o.txt", python="py",
                    masscan=adapter)  # fmt: skip
    assert mass[:5] == ["masscan", "-p", "1-100", "--rate", "500"]
    assert mass[-3:] == ["-oL", "o.txt", "198.18.4.11"]
    bounce = Workload("b", "g", Technique.FTP_BOUNCE, ("h1",), 10, relay="ftp")
    argv = argv_for(
        BenchEngine.NMAP, bounce, ["198.18.4.11"], "o", python="py", relay="198.18.4.80"
    )
    assert "-b" in argv and argv[argv.index("-b") + 1] == "anonymous:bench@198.18.4.80:21"


# --- accuracy -----------------------------------------------------------------------------


def test_masscan_list_parse() -> None:
    text = (
        "#masscan\nopen tcp 80 198.18.4.11 1700000000\n\n"
        "open tcp 22 198.18.4.12 1700000001\n# end\n"
    )
    assert accuracy.parse_masscan_list(text) == [("198.18.4.11", 80), ("198.18.4.12", 22)]
    for bad in ("open udp 53 198.18.4.11 1", "open tcp 70000 198.18.4.11 1", "banner x y z w"):
        with pytest.raises(ValueError, match="line 1"):
            accuracy.parse_masscan_list(bad)


@given(
    st.lists(
        st.tuples(st.ip_addresses(v=4).map(str), st.integers(0, 65535), st.integers(0, 2**31)),
        max_size=30,
    )
)
def test_masscan_list_roundtrip(entries: list[tuple[str, int, int]]) -> None:
    text = "#masscan\n" + "".join(f"open tcp {p} {a} {t}\n" for a, p, t in entries) + "# end\n"
    assert accuracy.parse_masscan_list(text) == [(a, p) for a, p, _ in entries]


@given(st.text(max_size=200))
def test_masscan_list_parse_never_crashes_otherwise(text: str) -> None:
    try:
        rows = accuracy.parse_masscan_list(text)
    except ValueError:
        return
    assert all(0 <= p <= 65535 for _, p in rows)


STATES = st.sampled_from(["open", "closed", "filtered", "open|filtered"])


@given(
    st.dictionaries(st.tuples(st.just("h"), st.integers(1, 50)), STATES, min_size=1),
    st.dictionaries(st.tuples(st.just("h"), st.integers(1, 60)), STATES),
)
def test_score_counts(truth: dict[tuple[str, int], str], found: dict[tuple[str, int], str]) -> None:
    sc = accuracy.score(found, truth)
    assert sc.cells == len(truth)
    assert sc.agree == sum(found.get(c) == s for c, s in truth.items())
    assert sc.reported == sum(c in found for c in truth)
    assert 0 <= sc.agree <= sc.reported <= sc.cells
    assert sc.accuracy == sc.agree / sc.cells
    assert sc.false_open == sum(s == "open" and truth.get(c) != "open" for c, s in found.items())
    if found == truth:
        assert sc.accuracy == 1.0 and sc.false_open == 0
        assert sc.open_recall in (None, 1.0)


def test_score_open_only_has_no_accuracy() -> None:
    truth = {("h", 1): "open", ("h", 2): "closed", ("h", 3): "open"}
    sc = accuracy.score({("h", 1): "open", ("h", 2): "open"}, truth, open_only=True)
    assert sc.accuracy is None
    assert sc.open_recall == 0.5 and sc.false_open == 1


@pytest.mark.parametrize("tech", [Technique.SYN, Technique.FIN, Technique.UDP, Technique.ACK])
def test_truth_cells_match_the_lab_truth_per_port(tech: Technique) -> None:
    from twinscan.lab.truth import expected

    spec = load_spec(BENCH_SPEC)
    w = Workload("w", "g", tech, ("h1", "acl"), 1200)
    cells = accuracy.truth_cells(w, spec)
    assert len(cells) == 2 * 1200
    for name in w.hosts:
        host = spec.host(name)
        for port in range(1, 1201):
            assert cells[(host.address, port)] == expected(host, tech, port).state.value


def test_loopback_truth() -> None:
    w = Workload("w", "g", Technique.CONNECT, (), 100)
    cells = accuracy.truth_cells(w, None, loopback_listeners=(22, 80, 5000))
    assert len(cells) == 100
    assert {p for (_, p), s in cells.items() if s == "open"} == {22, 80}
    assert all(h == "127.0.0.1" for h, _ in cells)


def test_loopback_udp_truth() -> None:
    w = Workload("w", "g", Technique.UDP, (), 200)
    udp = {53: "dns", 123: "ntp", 199: "silent"}
    cells = accuracy.truth_cells(w, None, loopback_listeners=(22,), loopback_udp=udp)
    by_state: dict[str, set[int]] = {}
    for (_, port), state in cells.items():
        by_state.setdefault(state, set()).add(port)
    assert by_state.pop("open") == {53, 123}
    assert by_state.pop("open|filtered") == {199}
    assert by_state == {"closed": set(range(1, 201)) - {53, 123, 199}}  # TCP 22 plays no part


def test_read_verdicts_of_nmap_xml() -> None:
    xml = next((REPO / "fixtures" / "nmap").glob("*.xml"))
    found = accuracy.read_verdicts(accuracy.OutputKind.NMAP_XML, xml)
    assert found and all(isinstance(p, int) for _, p in found)


# --- report -------------------------------------------------------------------------------


def _run(
    engine: str, wall: float, *, warmup: bool = False, status: str = "ok"
) -> dict[str, object]:
    return {
        "workload": "w", "group": "growth", "technique": "syn", "engine": engine, "probes": 100,
        "warmup": warmup, "status": status, "wall_s": wall, "cpu_s": wall / 2,
        "peak_rss_mib": 10 * wall, "packets": 100, "accuracy": 1.0, "open_recall": 1.0,
        "false_open": 0, "error": "" if status == "ok" else "exit 4: boom",
    }  # fmt: skip


@pytest.mark.parametrize(
    ("native_wall", "native_acc", "want"),
    [
        (0.9, 1.0, "| 0.90 | **yes** |"),  # under the 1.0x goal
        (1.0, 1.0, "| 1.00 | **yes** |"),  # at it
        (1.5, 1.0, "| 1.50 | no |"),
        (0.5, 0.99, "| 0.50 | **yes** (accuracy below 100%) |"),
    ],
)
def test_targets_table_checks_each_goal(native_wall: float, native_acc: float, want: str) -> None:
    def run(engine: str, wall: float, acc: float) -> dict[str, object]:
        return _run(engine, wall) | {"workload": "loopback-65k-syn", "accuracy": acc}

    runs = [run("nmap", 1.0, 1.0), run("twinscan", native_wall, native_acc)]
    table = render.targets_table(render.summarize(runs))
    wall_goal = next(ln for ln in table.splitlines() if "`loopback-65k-syn` time" in ln)
    assert wall_goal.endswith(want), wall_goal
    rss_goal = next(ln for ln in table.splitlines() if "`loopback-65k-syn` peak RSS" in ln)
    assert "<= 2x nmap" in rss_goal  # rss = 10 x wall in _run: ratio = native_wall
    assert rss_goal.endswith("| **yes** |" if native_acc == 1.0 else "(accuracy below 100%) |")
    assert "| `loopback-1k-syn` time <= 2x nmap | – | – | – | not measured |" in table


def test_summarize_medians_ratios_and_failures() -> None:
    runs = [_run("nmap", 99, warmup=True), _run("twinscan", 99, warmup=True)]
    runs += [_run("nmap", w) for w in (1.0, 2.0, 3.0)]
    runs += [_run("twinscan", w) for w in (4.0, 5.0, 9.0)]
    runs += [_run("masscan", math.nan, status="timeout")]
    summary = {r["engine"]: r for r in render.summarize(runs)}
    assert summary["nmap"]["wall_median_s"] == 2.0 and summary["nmap"]["wall_ratio"] == 1.0
    native = summary["twinscan"]
    assert (native["wall_median_s"], native["wall_min_s"], native["wall_max_s"]) == (5.0, 4.0, 9.0)
    assert native["wall_ratio"] == 2.5 and native["runs"] == 3
    assert summary["masscan"]["runs"] == 0 and summary["masscan"]["status"] == "timeout"
    assert summary["masscan"]["wall_ratio"] is None
    table = render.markdown_table(list(summary.values()))
    assert "| `w` | twinscan | 3 | 5.00 (4.00–9.00) | 2.50 |" in table
    assert "**timeout: exit 4: boom**" in table


def test_replace_block_rewrites_only_between_markers() -> None:
    block = f"{render.BEGIN}\nNEW\n{render.END}\n"
    text = f"# t\n\n## Performance\n\nmine\n\n{render.BEGIN}\nOLD\n{render.END}\n\nafter\n"
    out = render.replace_block(text, block)
    assert "NEW" in out and "OLD" not in out and "mine" in out and out.endswith("after\n")
    assert render.replace_block(out, block) == out
    fresh = render.replace_block("# t\n\n## Development\n\nx\n", block)
    assert fresh.index("## Performance") < fresh.index("## Development")
    with pytest.raises(ValueError):
        render.replace_block(f"x {render.BEGIN} y", block)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    runs = [_run(e, w * k) for e in ("nmap", "twinscan") for k in (1, 2) for w in (1.0, 2.0)]
    for i, r in enumerate(runs):
        r["workload"], r["probes"] = f"w{i % 2}", 100 * (1 + i % 2)
    path = tmp_path / "b.png"
    render.plot(render.summarize(runs), path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- measure (a local child process, no network) ----------------------------------------


def test_run_measured_sees_memory_cpu_and_the_tree() -> None:
    code = (
        "import subprocess, sys; "
        "child = subprocess.Popen([sys.executable, '-c', "
        "'b = bytearray(120 * 2**20); import time; time.sleep(0.4)']); "
        "sum(range(3_000_000)); child.wait()"
    )
    m = run_measured([sys.executable, "-c", code], timeout_s=30)
    assert m.exit_code == 0 and not m.timed_out
    assert m.peak_rss_mib > 120  # the grandchild's buffer counts in the tree's peak
    assert m.cpu_s > 0.02 and m.wall_s >= 0.4 and m.samples > 5


def test_run_measured_times_out_and_counts() -> None:
    ticks = iter(range(100))
    m = run_measured(["sleep", "30"], timeout_s=0.3, packets=lambda: next(ticks) * 7)
    assert m.timed_out and m.exit_code is None and m.wall_s < 5
    assert m.packets == 7


def test_twinscan_runs_as_the_installed_script_when_there_is_one(tmp_path: Path) -> None:
    """As a user runs it (``twinscan scan``), not through runpy; a source tree without the
    install falls back to ``python -m twinscan``."""
    from twinscan.bench.plan import twinscan_command

    python = tmp_path / "bin" / "python"
    python.parent.mkdir()
    assert twinscan_command(str(python)) == [str(python), "-m", "twinscan"]
    script = python.parent / "twinscan"
    script.write_text("#!/bin/sh\n")
    assert twinscan_command(str(python)) == [str(python), "-m", "twinscan"]  # not executable
    script.chmod(0o755)
    assert twinscan_command(str(python)) == [str(script)]
    w = Workload("w", "g", Technique.SYN, (), 10)
    assert argv_for(BenchEngine.NATIVE, w, ["127.0.0.1"], "o", python=str(python))[:2] == [
        str(script),
        "scan",
    ]


#: A bench killed (SIGTERM) during its first workload: the bench lab is faked, and its
#: up/down events go to the file named by argv[1].
_KILLED_BENCH = """
import contextlib, os, signal, sys
from pathlib import Path
from twinscan.bench import harness
events = Path(sys.argv[1])

@contextlib.contextmanager
def fake_lab(spec, log):
    events.write_text("up\\n")
    try:
        yield None
    finally:
        events.write_text(events.read_text() + "down\\n")

def killed(*args):
    os.kill(os.getpid(), signal.SIGTERM)
    return []

harness.bench_lab = fake_lab
harness.check_environment = lambda workloads: None
harness.run_workload = killed
harness.run_bench(harness.BenchConfig(out_dir=Path(sys.argv[2]), quick=True))
"""


def test_a_killed_bench_takes_its_lab_down(tmp_path: Path) -> None:
    """``kill`` (SIGTERM) stops the bench as Ctrl-C does: its lab does not outlive it."""
    proc, events = run_killed(_KILLED_BENCH, tmp_path)
    assert proc.returncode != 0
    assert events == ["up", "down"], proc.stderr
