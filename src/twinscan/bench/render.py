"""From per-run rows to the summary: medians, spreads, ratios to nmap, the table, the plot.

Everything but ``plot`` is pure. A summary row is one (workload, engine): the median and
min-max of the measured (non-warm-up, successful) runs, the engine's median over nmap's median
in the same workload (< 1 means faster or smaller than nmap), and the accuracy of its verdicts
against the truth. An engine whose runs failed or timed out gets a row that says so, never a
number.
"""

from __future__ import annotations

import dataclasses
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from twinscan.bench.plan import BASELINE

BEGIN = "<!-- bench:begin -->"
END = "<!-- bench:end -->"

#: Columns of ``runs.csv``, one row per run (warm-up runs included, flagged).
RUN_COLUMNS: tuple[str, ...] = (
    "workload", "group", "technique", "engine", "round", "warmup", "status", "hosts", "ports",
    "probes", "wall_s", "cpu_s", "cpu_user_s", "cpu_sys_s", "peak_rss_mib",
    "max_rss_single_mib", "rss_samples", "packets", "packets_counted", "exit_code", "cells",
    "reported", "agree", "accuracy", "open_truth", "open_found", "open_recall", "false_open",
    "error",
)  # fmt: skip

#: Columns of ``summary.csv``, one row per (workload, engine).
SUMMARY_COLUMNS: tuple[str, ...] = (
    "workload", "group", "technique", "engine", "probes", "runs", "failed", "status",
    "wall_median_s", "wall_min_s", "wall_max_s", "wall_ratio", "cpu_median_s", "cpu_ratio",
    "rss_median_mib", "rss_min_mib", "rss_max_mib", "rss_ratio", "packets_median",
    "accuracy_median", "accuracy_min", "open_recall_median", "false_open_max", "error",
)  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Spread:
    median: float
    low: float
    high: float

    @classmethod
    def of(cls, values: Sequence[float]) -> Spread | None:
        vals = [v for v in values if v is not None and not math.isnan(v)]
        if not vals:
            return None
        return cls(statistics.median(vals), min(vals), max(vals))


def _floats(rows: Iterable[Mapping[str, Any]], key: str) -> list[float]:
    out: list[float] = []
    for row in rows:
        value = row.get(key)
        if value is None or value == "":
            continue
        number = float(value)
        if not math.isnan(number):
            out.append(number)
    return out


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or base is None or base <= 0:
        return None
    return value / base


def summarize(runs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """One summary row per (workload, engine), in the order the runs first appear."""
    groups: dict[tuple[str, str], list[Mapping[str, Any]]] = {}
    for row in runs:
        groups.setdefault((str(row["workload"]), str(row["engine"])), []).append(row)
    medians: dict[tuple[str, str], dict[str, float | None]] = {}
    out: list[dict[str, Any]] = []
    for (workload, engine), rows in groups.items():
        measured = [r for r in rows if not _truthy(r["warmup"]) and r["status"] == "ok"]
        failed = [r for r in rows if r["status"] != "ok"]
        wall = Spread.of(_floats(measured, "wall_s"))
        cpu = Spread.of(_floats(measured, "cpu_s"))
        rss = Spread.of(_floats(measured, "peak_rss_mib"))
        acc = Spread.of(_floats(measured, "accuracy"))
        recall = Spread.of(_floats(measured, "open_recall"))
        packets = Spread.of(_floats(measured, "packets"))
        false_open = _floats(measured, "false_open")
        medians[(workload, engine)] = {
            "wall": wall.median if wall else None,
            "cpu": cpu.median if cpu else None,
            "rss": rss.median if rss else None,
        }
        if measured:
            status = "ok" if not failed else f"ok ({len(failed)} failed)"
        else:
            status = str(failed[-1]["status"]) if failed else "no measured run"
        first = rows[0]
        out.append(
            {
                "workload": workload,
                "group": first["group"],
                "technique": first["technique"],
                "engine": engine,
                "probes": int(first["probes"]),
                "runs": len(measured),
                "failed": len(failed),
                "status": status,
                "wall_median_s": wall.median if wall else None,
                "wall_min_s": wall.low if wall else None,
                "wall_max_s": wall.high if wall else None,
                "cpu_median_s": cpu.median if cpu else None,
                "rss_median_mib": rss.median if rss else None,
                "rss_min_mib": rss.low if rss else None,
                "rss_max_mib": rss.high if rss else None,
                "packets_median": packets.median if packets else None,
                "accuracy_median": acc.median if acc else None,
                "accuracy_min": acc.low if acc else None,
                "open_recall_median": recall.median if recall else None,
                "false_open_max": max(false_open) if false_open else None,
                "error": next((str(r["error"]) for r in reversed(failed) if r["error"]), ""),
            }
        )
    for row in out:
        mine = medians[(row["workload"], row["engine"])]
        base = medians.get((row["workload"], BASELINE.value), {})
        row["wall_ratio"] = _ratio(mine["wall"], base.get("wall"))
        row["cpu_ratio"] = _ratio(mine["cpu"], base.get("cpu"))
        row["rss_ratio"] = _ratio(mine["rss"], base.get("rss"))
    return [{c: row.get(c) for c in SUMMARY_COLUMNS} for row in out]


def _truthy(value: object) -> bool:
    return value is True or str(value).lower() in ("true", "1")


def _num(value: object, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return format(float(str(value)), fmt)


def _pct(value: object) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{100 * float(str(value)):.1f}%"


def markdown_table(summary: Sequence[Mapping[str, Any]]) -> str:
    """The results table (GitHub markdown): one row per workload and engine."""
    head = (
        "| workload | engine | runs | wall s: median (min–max) | × nmap | CPU s | × nmap "
        "| peak RSS MiB: median (min–max) | × nmap | packets | accuracy | open recall |\n"
        "|---|---|--:|---|--:|--:|--:|---|--:|--:|--:|--:|\n"
    )
    lines: list[str] = []
    for row in summary:
        name = f"`{row['workload']}`"
        if row["runs"] == 0:
            why = str(row["status"]) + (f": {row['error']}" if row["error"] else "")
            why = why.replace("|", "\\|")[:140]
            lines.append(f"| {name} | {row['engine']} | 0 | **{why}** | | | | | | | | |")
            continue
        wall = (
            f"{_num(row['wall_median_s'], '.2f')} "
            f"({_num(row['wall_min_s'], '.2f')}–{_num(row['wall_max_s'], '.2f')})"
        )
        rss = (
            f"{_num(row['rss_median_mib'], '.0f')} "
            f"({_num(row['rss_min_mib'], '.0f')}–{_num(row['rss_max_mib'], '.0f')})"
        )
        runs = str(row["runs"]) + (f" (+{row['failed']} failed)" if row["failed"] else "")
        lines.append(
            f"| {name} | {row['engine']} | {runs} | {wall} | {_num(row['wall_ratio'], '.2f')} "
            f"| {_num(row['cpu_median_s'], '.2f')} | {_num(row['cpu_ratio'], '.2f')} | {rss} "
            f"| {_num(row['rss_ratio'], '.2f')} | {_num(row['packets_median'], '.0f')} "
            f"| {_pct(row['accuracy_median'])} | {_pct(row['open_recall_median'])} |"
        )
    return head + "\n".join(lines) + "\n"


@dataclasses.dataclass(frozen=True, slots=True)
class Target:
    """A goal of twinscan's native engine against nmap in one workload: its median over
    nmap's median (``measure``: wall time or peak RSS), at most ``at_most``."""

    workload: str
    measure: str  # "wall" or "rss"
    at_most: float


#: the speed and memory goals (issue "Speed"), checked on every full run.
TARGETS: tuple[Target, ...] = (
    Target("loopback-65k-syn", "wall", 1.0),
    Target("loopback-65k-syn", "rss", 2.0),
    Target("loopback-1k-syn", "wall", 2.0),
    Target("loopback-1k-udp", "wall", 2.0),
    Target("lab-2x10k-udp", "wall", 1.0),
)

_MEASURES = {"wall": ("wall_median_s", "wall_ratio", "s", ".2f"),
             "rss": ("rss_median_mib", "rss_ratio", "MiB", ".0f")}  # fmt: skip


def targets_table(summary: Sequence[Mapping[str, Any]], engine: str = "twinscan") -> str:
    """The goals of ``TARGETS`` against this run: measured values, ratio, met or not."""
    rows = {(str(r["workload"]), str(r["engine"])): r for r in summary}
    lines = [
        "| goal | twinscan | nmap | × nmap | met |",
        "|---|--:|--:|--:|---|",
    ]
    for t in TARGETS:
        mine, base = rows.get((t.workload, engine)), rows.get((t.workload, BASELINE))
        column, ratio_key, unit, fmt = _MEASURES[t.measure]
        goal = (
            f"`{t.workload}` {'time' if t.measure == 'wall' else 'peak RSS'} <= {t.at_most:g}x nmap"
        )
        if not mine or not base or not mine["runs"] or not base["runs"]:
            lines.append(f"| {goal} | – | – | – | not measured |")
            continue
        ratio = mine[ratio_key]
        met = ratio is not None and not math.isnan(float(ratio)) and float(ratio) <= t.at_most
        accurate = mine["accuracy_median"] in (None, "") or float(mine["accuracy_median"]) == 1.0
        verdict = ("**yes**" if met else "no") + ("" if accurate else " (accuracy below 100%)")
        lines.append(
            f"| {goal} | {_num(mine[column], fmt)} {unit} | {_num(base[column], fmt)} {unit} "
            f"| {_num(ratio, '.2f')} | {verdict} |"
        )
    return "\n".join(lines) + "\n"


def render_block(
    summary: Sequence[Mapping[str, Any]],
    *,
    command: str,
    when: str,
    machine: str,
    notes: Sequence[str] = (),
    plot: str | None = None,
) -> str:
    """The generated README block (markers included): provenance, table, plot, notes."""
    parts = [
        BEGIN,
        "<!-- generated by the benchmark harness: edit twinscan.bench, not this block -->",
        "",
        f"Measured {when} on {machine}, with `{command}`. Medians of the measured runs after a "
        "warm-up; engines alternate run by run; ratios are the engine's median over nmap's "
        "median in the same workload (below 1: faster or smaller than nmap).",
        "",
        markdown_table(summary),
    ]
    if any(str(r["workload"]) == t.workload for r in summary for t in TARGETS):
        parts += ["Goals (twinscan's native engine against nmap in this run):", "",
                  targets_table(summary)]  # fmt: skip
    if plot:
        parts += [f"![time and memory against work, per engine]({plot})", ""]
    parts += [f"- {n}" for n in notes]
    parts += ["", END]
    return "\n".join(parts) + "\n"


def replace_block(text: str, block: str) -> str:
    """Put ``block`` between the markers of ``text`` (or a new Performance section if none).

    A new section goes before ``## Development`` when there is one, else at the end.
    """
    start, end = text.find(BEGIN), text.find(END)
    if start != -1 and end > start:
        return text[:start] + block.rstrip("\n") + text[end + len(END) :]
    if start != -1 or end != -1:
        raise ValueError(f"README has only one of {BEGIN} / {END}")
    section = "## Performance\n\n" + block + "\n"
    anchor = text.find("\n## Development")
    if anchor == -1:
        return text.rstrip("\n") + "\n\n" + section
    return text[: anchor + 1] + section + text[anchor + 1 :]


_COLORS = {"twinscan": "tab:green", "twinscan-nmap": "tab:blue", "nmap": "tab:orange",
           "masscan": "tab:red"}  # fmt: skip


def plot(summary: Sequence[Mapping[str, Any]], path: Path) -> None:
    """Wall time and peak RSS against probes (ports x hosts), one line per engine.

    The growth workloads make the lines; without them (``--quick``) every workload is a point.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in summary if r["runs"] and r["group"] == "growth"]
    title, style = "growth workloads (SYN, lab)", "-o"
    if not rows:
        rows = [r for r in summary if r["runs"]]
        title, style = "all workloads (points are different workloads)", "o"
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.8), constrained_layout=True)
    metrics = (
        ("wall_median_s", "wall_min_s", "wall_max_s", "wall time (s)"),
        ("rss_median_mib", "rss_min_mib", "rss_max_mib", "peak RSS of the process tree (MiB)"),
    )
    engines = list(dict.fromkeys(str(r["engine"]) for r in rows))
    for ax, (mid, low, high, label) in zip(axes, metrics, strict=True):
        for engine in engines:
            mine = sorted((r for r in rows if r["engine"] == engine), key=lambda r: r["probes"])
            xs = [float(r["probes"]) for r in mine]
            ys = [float(r[mid]) for r in mine]
            err = [
                [y - float(r[low]) for y, r in zip(ys, mine, strict=True)],
                [float(r[high]) - y for y, r in zip(ys, mine, strict=True)],
            ]
            ax.errorbar(xs, ys, yerr=err, fmt=style, capsize=3, label=engine,
                        color=_COLORS.get(engine))  # fmt: skip
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("probes (ports × hosts)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.suptitle(f"twinscan vs nmap vs masscan: {title}; median, bars = min–max")
    fig.savefig(path, dpi=110)
    plt.close(fig)
