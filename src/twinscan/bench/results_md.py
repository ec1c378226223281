"""The README's passages built from the benchmark scripts' CSVs in ``benchmarks/results/``.

Each ``Block`` turns one CSV (``NAME.csv``) into ``NAME.md`` beside it, which is also the body of
the README's ``<!-- results:NAME:begin -->`` block (``twinscan.bench.readme_blocks``). Every
figure in the text is computed here from the CSV: a number the CSV does not hold is not written.
The scripts under ``benchmarks/`` call ``publish`` after measuring and with ``--render-only``;
``python -m twinscan.bench.results_md`` re-renders them all. tests/bench/test_readme_blocks.py
checks that the README, the ``.md`` files and these renderers agree.
"""

from __future__ import annotations

import argparse
import csv
import io
import re
import statistics
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Final

from twinscan.bench.readme_blocks import update_readme

Row = dict[str, str]
BLOCK_START: Final = re.compile(r"([-+*]|\d+[.)])(\s|$)|#|>|=+$|\|")


def rows_of(text: str) -> list[Row]:
    """The CSV's rows (lines starting with ``#`` are comments)."""
    lines = [line for line in text.splitlines() if not line.startswith("#")]
    return [dict(r) for r in csv.DictReader(io.StringIO("\n".join(lines)))]


def num(value: str | float, places: int) -> str:
    """``value`` rounded half up to ``places`` decimals, as written in the CSV (2.645 -> 2.65)."""
    exp = Decimal(1).scaleb(-places)
    return str(Decimal(str(value)).quantize(exp, rounding=ROUND_HALF_UP))


def pct(new: float, old: float) -> str:
    return f"{'+' if new >= old else '-'}{num(abs(new / old - 1) * 100, 0)}%"


def prose(text: str) -> str:
    """A paragraph wrapped at 99 columns, as the README's own are (a line that Markdown would
    read as a list item, heading or quote stays on the line before)."""
    lines: list[str] = []
    for line in textwrap.wrap(
        " ".join(text.split()), width=99, break_long_words=False, break_on_hyphens=False
    ):
        if lines and BLOCK_START.match(line):
            lines[-1] += " " + line
        else:
            lines.append(line)
    return "\n".join(lines)


def _hosts(n: int) -> str:
    return "one host" if n == 1 else f"{n} hosts"


# --- memory_growth.csv (benchmarks/bench_memory_growth.py) ---------------------------------------

MEMORY_TOOLS: Final = (
    ("twinscan", "twinscan: time, tree RSS (PSS)"),
    ("twinscan-dask", "`--dask local:2`: time, RSS (PSS)"),
    ("nmap", "nmap -sT -T4: time, RSS (PSS)"),
)


def memory_growth(text: str) -> str:
    """The table of time and peak memory against hosts, and what it shows."""
    rows = rows_of(text)
    by = {(r["tool"], int(r["hosts"])): r for r in rows}
    hosts = sorted({int(r["hosts"]) for r in rows})
    ports = rows[0]["ports"]
    ports_label = f"{int(ports)} ports" if ports.isdigit() else f"ports {ports}"
    out = [
        f"| hosts x {ports_label} | " + " | ".join(label for _, label in MEMORY_TOOLS) + " |",
        "|---" * (1 + len(MEMORY_TOOLS)) + "|",
    ]
    for h in hosts:
        probes = next(r["probes"] for t, _ in MEMORY_TOOLS if (r := by.get((t, h))))
        cells = [f"{h} ({int(probes):,} probes)"]
        for tool, _ in MEMORY_TOOLS:
            r = by.get((tool, h))
            if r is None:
                cells.append("-")
            elif r["exit"] != "0":
                cells.append(f"exit {r['exit']}")
            else:
                cells.append(
                    f"{num(r['wall_s'], 1)} s, {num(r['peak_rss_mib'], 0)} MiB "
                    f"({num(r['peak_pss_mib'], 0)})"
                )
        out.append("| " + " | ".join(cells) + " |")

    def rss(tool: str, h: int) -> float:
        return float(by[(tool, h)]["peak_rss_mib"])

    def wall(tool: str, h: int) -> float:
        return float(by[(tool, h)]["wall_s"])

    plain = [h for h in hosts if ("twinscan", h) in by]
    text_ = ""
    if rows and rows[0].get("runs"):
        text_ = f"Each cell: the median of {rows[0]['runs']} runs, the tools alternating. "
    if plain:
        a, b = plain[0], plain[-1]
        text_ += (
            f"Without Dask: {num(rss('twinscan', b), 0)} MiB at {_hosts(b)} against "
            f"{num(rss('twinscan', a), 0)} MiB at {_hosts(a)} "
            f"({pct(rss('twinscan', b), rss('twinscan', a))}). The main process runs the "
            "host blocks one after the other and collects the block being scanned from its "
            "connect workers (forked anew for each block, so they start from what the main "
            "process holds then), then writes it and forgets it"
        )
        if a == 1 and len(plain) > 2:
            # one host at all ports is one block: held whole, not streamed
            second = plain[1]
            text_ += (
                f" (a one-host scan is one block, held whole and not streamed; from "
                f"{_hosts(second)} to {_hosts(b)}, where every scan streams: "
                f"{pct(rss('twinscan', b), rss('twinscan', second))})"
            )
    nmap = [h for h in plain if ("nmap", h) in by]
    if nmap:
        smaller = all(rss("nmap", h) < rss("twinscan", h) for h in nmap)
        sizes = [rss("nmap", h) for h in nmap]
        text_ += (
            f"; nmap stays smaller still ({num(min(sizes), 0)}-{num(max(sizes), 0)} MiB)."
            if smaller
            else f"; nmap is not smaller at every size ({num(min(sizes), 0)}-"
            f"{num(max(sizes), 0)} MiB)."
        )
    elif text_:
        text_ += "."
    dask = [h for h in hosts if ("twinscan-dask", h) in by]
    if dask:
        a, b = dask[0], dask[-1]
        slower = all(wall("twinscan-dask", h) >= wall("twinscan", h) for h in dask if h in plain)
        extra = (
            f" ({num(rss('twinscan-dask', a) - rss('twinscan', a), 0)} MiB more than the plain "
            f"scan at {_hosts(a)})"
            if a in plain
            else ""
        )
        text_ += (
            f" `--dask local:2` adds a scheduler and two Dask worker processes{extra} and grows "
            f"with the work (the workers' heaps: {num(rss('twinscan-dask', a), 0)} MiB at "
            f"{_hosts(a)}, {num(rss('twinscan-dask', b), 0)} MiB at {_hosts(b)}); "
            + (
                "on one machine it buys nothing over the plain scan (slower at every size), it "
                "is there to reach more machines."
                if slower
                else "on one machine it is faster than the plain scan at some sizes, and it is "
                "there to reach more machines."
            )
        )
    return "\n".join(out) + "\n\n" + prose(text_) + "\n"


# --- audit_overhead.csv (benchmarks/bench_audit.py) -----------------------------------------------


def audit_overhead(text: str) -> str:
    """The **Cost.** paragraph of the audit section."""
    rows = rows_of(text)
    runs = [r for r in rows if r["run"] != "median"]
    med = next((r for r in rows if r["run"] == "median"), None)
    scan = med["scan_s"] if med else str(statistics.median(float(r["scan_s"]) for r in runs))
    audit = med["audit_s"] if med else str(statistics.median(float(r["audit_s"]) for r in runs))
    ratio = med["ratio"] if med else str(statistics.median(float(r["ratio"]) for r in runs))
    ratios = [float(r["ratio"]) for r in runs]
    first = rows[0]
    tech = first["technique"]
    command = "sudo .venv/bin/python benchmarks/bench_audit.py --runs " + str(len(runs))
    if tech != "-sS":
        command += f" --technique {tech.removeprefix('-s')}"
    return (
        prose(
            f"**Cost.** An audit of 1 host x 65535 TCP ports against the scan alone (loopback, "
            f"`{tech}`, alternating runs, medians; `benchmarks/results/audit_overhead.csv`):\n"
            f"scan {num(scan, 3)} s, audit {num(audit, 3)} s, median ratio **{num(ratio, 3)}x** "
            f"({num(min(ratios), 2)}-{num(max(ratios), 2)} over {len(runs)} pairs; goal <= 1.2x), "
            f"measured {first['measured']} on {first['cpus']} CPUs (load {first['load']}) with "
            f"`{command}`. The audit adds its own work (the policy, one pass over the 65535 cells, "
            "the owners of open findings) and skips the scan's text report."
        )
        + "\n"
    )


# --- icmp_ratelimit.csv (benchmarks/bench_icmp_ratelimit.py) --------------------------------------


def icmp_ratelimit(text: str) -> str:
    """The table of UDP scan times against the floor each ICMP rate limit imposes."""
    rows = rows_of(text)
    by: dict[tuple[int, int], list[Row]] = {}
    for r in rows:
        by.setdefault((int(r["silent"]), int(r["icmp_ratelimit_ms"])), []).append(r)
    bursts = sorted({r["burst"] for r in rows})
    counts = sorted({len(rs) for rs in by.values()})
    runs = f"{counts[0]}" if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    run_word = "run" if counts == [1] else "runs"
    lines = [
        "| icmp_ratelimit | ports (closed + open\\|filtered) | floor (closed - "
        f"{'/'.join(bursts)}) x interval | twinscan -sU -T4 (median of {runs} {run_word}) "
        "| time / floor | verdicts right |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    for (silent, ms), rs in sorted(by.items()):
        t = statistics.median(float(r["time_s"]) for r in rs)
        floor = float(rs[0]["floor_s"])
        right = sum(int(r["right"]) for r in rs)
        total = sum(int(r["total"]) for r in rs)
        ports = int(rs[0]["ports"])
        limit = f"{ms} ms" if ms else "off (baseline)"
        ratio = f"{num(t / floor, 2)}x" if floor else "-"
        lines.append(
            f"| {limit} | {ports - silent} + {silent} | {num(floor, 1)} s | {num(t, 1)} s "
            f"| {ratio} | {right}/{total} |"
        )
    return "\n".join(lines) + "\n"


# --- detect_speed.csv (benchmarks/detect_speed.py) ------------------------------------------------

DETECT_TARGET_S: Final = 3.0


def detect_speed(text: str) -> str:
    """The latest measurement of each tool (the CSV is appended to), and what it shows."""
    latest: dict[str, Row] = {}
    for r in rows_of(text):
        latest[r["tool"]] = r  # later rows are later runs
    lines = ["| command | packets | median | fastest | runs |", "|---|---|---|---|---|"]
    for r in latest.values():
        lines.append(
            f"| `{r['command']}` | {int(r['packets']):,} | {num(r['median_s'], 2)} s "
            f"| {num(r['min_s'], 2)} s | {r['runs']} |"
        )
    twin = latest.get("twinscan detect")
    if twin is None:
        return "\n".join(lines) + "\n"
    cores = re.search(r"x(\d+)$", twin["cpu"])
    machine = twin["cpu"].rsplit(" ", 1)[0]
    if cores:
        n = cores.group(1)
        article = "an" if n in ("11", "18") or n.startswith("8") else "a"
        where = f"{article} {n}-core {machine} machine"
    else:
        where = twin["cpu"]
    median = float(twin["median_s"])
    verdict = (
        f"in under the {num(DETECT_TARGET_S, 0)} s target"
        if median < DETECT_TARGET_S
        else f"in more than the {num(DETECT_TARGET_S, 0)} s target"
    )
    text_ = prose(
        f"Measured {twin['date']} on {where} with `.venv/bin/python -m benchmarks.detect_speed "
        f"--repeat {twin['runs']}`: the whole `twinscan detect` command, Python start-up and every "
        f"detector included, reads the {int(twin['packets']):,} packets {verdict} "
        f"({num(median, 2)} s median). tcpdump only copies records here (no decoding), which is "
        "its floor, not a like-for-like comparison; the library's stages (read, fields, "
        "contacts, detectors) are printed by the benchmark."
    )
    return "\n".join(lines) + "\n\n" + text_ + "\n"


# --- ipv6.csv (benchmarks/bench_ipv6.py) ----------------------------------------------------------


def ipv6(text: str) -> str:
    """Each workload's IPv4 and IPv6 medians side by side."""
    when = next(
        (line.split(",", 1)[1].strip() for line in text.splitlines() if line.startswith("#")),
        "",
    )
    groups: dict[str, dict[str, list[Row]]] = {}
    for r in rows_of(text):
        groups.setdefault(r["workload"], {}).setdefault(r["family"], []).append(r)
    lines = [
        "| workload | IPv4 | IPv6 | IPv6 / IPv4 | runs |",
        "|---|---:|---:|---:|---:|",
    ]
    for workload, fam in groups.items():
        v4, v6 = fam.get("ipv4", []), fam.get("ipv6", [])
        if not v4 or not v6:
            continue
        timed = all(r["seconds"] for r in v4 + v6)
        col, unit, places = ("seconds", "s", 3) if timed else ("peak_rss_mib", "MiB", 1)
        m4 = statistics.median(float(r[col]) for r in v4)
        m6 = statistics.median(float(r[col]) for r in v6)
        lines.append(
            f"| {workload} | {num(m4, places)} {unit} | {num(m6, places)} {unit} "
            f"| {num(m6 / m4, 2)}x | {len(v4)} + {len(v6)} |"
        )
    head = f"Measured {when} with `sudo .venv/bin/python benchmarks/bench_ipv6.py`" if when else ""
    return (head + " (medians):\n\n" if head else "") + "\n".join(lines) + "\n"


# --- phases.csv (benchmarks/bench_phases.py) ------------------------------------------------------

#: (row label, the mark that ends the phase: a name, or "*" + a suffix every technique's mark has)
PHASES: Final = (
    ("start-up: Python, imports, options parsed", "options parsed"),
    ("targets, ports, safety check, output plan", "targets, ports and plan checked"),
    ("engine set-up: templates, probe plan, sockets", "*: sockets open, probing starts"),
    ("probing: first probe to last verdict", "*: probing done"),
    ("result, files, report", "command returned"),
    ("exit: from the command's return to the process's end", "exit"),
)


def _phase_ends(marks: list[tuple[str, float]]) -> list[float] | None:
    """Each phase's end (ms since the spawn) in one run; None when a mark is missing. A suffix
    mark ends at its first occurrence for the set-up, at its last for probing (several
    techniques)."""
    ends: list[float] = []
    for _label, mark in PHASES:
        if mark.startswith("*"):
            hits = [ms for name, ms in marks if name.endswith(mark[1:])]
            if not hits:
                return None
            ends.append(hits[0] if "starts" in mark else hits[-1])
        else:
            hits = [ms for name, ms in marks if name == mark]
            if not hits:
                return None
            ends.append(hits[-1])
    return ends


def phases(text: str) -> str:
    """Median duration of each phase per workload, twinscan's and nmap's whole runs."""
    head = next((line for line in text.splitlines() if line.startswith("#")), "")
    found = re.search(r"--runs (\d+), (.+ UTC), (\d+) CPUs", head)
    runs: dict[tuple[str, str, str], list[tuple[str, float]]] = {}
    for r in rows_of(text):
        runs.setdefault((r["workload"], r["tool"], r["run"]), []).append(
            (r["mark"], float(r["ms"]))
        )
    workloads = list(dict.fromkeys(w for w, _, _ in runs))
    durations: dict[str, list[list[float]]] = {w: [] for w in workloads}
    nmap: dict[str, list[float]] = {w: [] for w in workloads}
    whole: dict[str, list[float]] = {w: [] for w in workloads}
    for (workload, tool, _run), marks in runs.items():
        if tool == "nmap":
            nmap[workload].append(marks[-1][1])
            continue
        ends = _phase_ends(marks)
        if ends is None:
            continue
        durations[workload].append([b - a for a, b in zip([0.0, *ends], ends, strict=False)])
        whole[workload].append(ends[-1])
    shown = [w for w in workloads if durations[w] and nmap[w]]
    if not shown:
        return "No complete run in the CSV.\n"

    def ms(value: float) -> str:
        return num(value, 0 if value >= 100 else 1)

    lines = [
        "| phase, ms (median) | " + " | ".join(shown) + " |",
        "|---|" + "--:|" * len(shown),
    ]
    med = {w: [statistics.median(col) for col in zip(*durations[w], strict=True)] for w in shown}
    for i, (label, _mark) in enumerate(PHASES):
        lines.append(f"| {label} | " + " | ".join(ms(med[w][i]) for w in shown) + " |")
    tw = {w: statistics.median(whole[w]) for w in shown}
    nm = {w: statistics.median(nmap[w]) for w in shown}
    lines.append(
        "| **twinscan, whole process** | " + " | ".join(f"**{ms(tw[w])}**" for w in shown) + " |"
    )
    lines.append("| nmap `-T4`, whole process | " + " | ".join(ms(nm[w]) for w in shown) + " |")
    lines.append("| twinscan / nmap | " + " | ".join(num(tw[w] / nm[w], 2) for w in shown) + " |")
    first = shown[0]
    before = sum(med[first][:3])
    intro = (
        f"Measured {found.group(2)} on {found.group(3)} CPUs with `sudo .venv/bin/python "
        f"benchmarks/bench_phases.py --runs {found.group(1)}`: "
        if found
        else "Measured with `sudo .venv/bin/python benchmarks/bench_phases.py`: "
    )
    text_ = prose(
        intro + "twinscan and nmap scan 127.0.0.1 alternately, and every phase is timed from the "
        "moment the benchmark spawns the process (twinscan's `--debug-timing` marks are on the "
        "same monotonic clock) to the moment it has reaped it; each cell is a median over the "
        "runs, so a column's phases need not add up to its whole. twinscan writes `--csv` (`-oX` "
        "where the column says so), nmap `-oX`. "
        f"On the {first} scan twinscan spends {ms(before)} ms before its first probe, against "
        f"{ms(med[first][3])} ms of probing and {ms(nm[first])} ms for nmap's whole run."
    )
    return text_ + "\n\n" + "\n".join(lines) + "\n"


# --- the blocks -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """``benchmarks/results/NAME.csv`` -> ``NAME.md`` (-> the README's ``results:NAME`` block)."""

    name: str
    command: str  # re-renders NAME.md (and the README block) from the CSV
    render: Callable[[str], str]
    in_readme: bool = True

    def note(self) -> str:
        return (
            f"<!-- generated by `{self.command}` from benchmarks/results/{self.name}.csv: "
            "edit twinscan.bench.results_md, not this block -->"
        )

    def markdown(self, csv_text: str) -> str:
        """``NAME.md``'s text: the note, a blank line, the rendered passage, a blank line (so
        that the README's markers stand apart from the Markdown around them)."""
        return f"{self.note()}\n\n{self.render(csv_text).rstrip()}\n\n"


BLOCKS: Final = {
    b.name: b
    for b in (
        Block(
            "memory_growth",
            ".venv/bin/python benchmarks/bench_memory_growth.py --render-only",
            memory_growth,
        ),
        Block(
            "audit_overhead",
            ".venv/bin/python benchmarks/bench_audit.py --render-only",
            audit_overhead,
        ),
        Block(
            "icmp_ratelimit",
            ".venv/bin/python benchmarks/bench_icmp_ratelimit.py --render-only",
            icmp_ratelimit,
        ),
        Block(
            "detect_speed",
            ".venv/bin/python -m benchmarks.detect_speed --render-only",
            detect_speed,
        ),
        Block(
            "phases",
            ".venv/bin/python benchmarks/bench_phases.py --render-only",
            phases,
        ),
        Block(
            "ipv6",
            ".venv/bin/python benchmarks/bench_ipv6.py --render-only",
            ipv6,
            in_readme=False,
        ),
    )
}


def publish(name: str, csv_path: Path, readme: Path | None = None) -> Path:
    """Render ``csv_path`` into the ``.md`` beside it and, given ``readme`` (and the block is
    quoted there), into its ``results:NAME`` block. Returns the ``.md``'s path."""
    block = BLOCKS[name]
    md = block.markdown(csv_path.read_text(encoding="utf-8"))
    md_path = csv_path.with_suffix(".md")
    md_path.write_text(md, encoding="utf-8")
    if readme is not None and block.in_readme:
        update_readme(readme, name, md)
    return md_path


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Re-render benchmarks/results/NAME.md and the README.")
    ap.add_argument("names", nargs="*", help=f"of {', '.join(BLOCKS)} (default: all)")
    ap.add_argument("--repo", type=Path, default=Path("."))
    args = ap.parse_args(argv)
    if unknown := set(args.names) - set(BLOCKS):
        ap.error(f"no such block: {', '.join(sorted(unknown))}")
    for name in args.names or list(BLOCKS):
        path = publish(name, args.repo / "benchmarks" / "results" / f"{name}.csv",
                       args.repo / "README.md")  # fmt: skip
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
