"""Run the benchmark: bring up the bench lab, run every workload with every engine, write results.

Everything runs inside the bench lab's scanner namespace (``ip netns exec``), loopback
workloads included: that namespace's loopback carries only the benchmark's traffic (so the
nftables probe counter counts only the scanner's probes) and its listeners are the harness's
own (so the loopback truth is known). The lab comes up under its own prefix (``tb`` + PID), so
it never collides with a test or demo lab, and it is always torn down.

masscan writes raw Ethernet frames and sends every one of them to a single "router" MAC. In
the scanner namespace it gets its own veth pair, one end on the lab bridge, and sends to the
bridge's MAC; the scanner namespace forwards to the host (IP forwarding on, redirects off, no
route beyond the lab subnet). It answers ARP for its own address itself.

Just over 400 lines: the lab plumbing (counters, listeners, masscan's veth) and the runs that
use it are one sequence; the plan, measurement and rendering live in their own modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import functools
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from twinscan.bench import accuracy, measure, render
from twinscan.bench.plan import (
    LOOPBACK,
    OUTPUT_OF,
    BenchEngine,
    MasscanAdapter,
    OutputKind,
    Workload,
    argv_for,
    catalog,
    schedule,
)
from twinscan.core.errors import EnvironmentProblem, UsageError

#: TCP ports the harness listens on in the scanner namespace's loopback (the loopback truth).
LOOPBACK_LISTENERS: tuple[int, ...] = (22, 80, 443, 8080, 50000)
#: UDP listeners on the same loopback: port -> what answers (DNS and NTP answer nmap's and
#: twinscan's payload probes: open; the silent one is open|filtered).
LOOPBACK_UDP_LISTENERS: dict[int, str] = {53: "dns", 123: "ntp", 999: "silent"}
#: nftables table and counters in the scanner namespace: TCP SYNs (no ACK) leaving on ``lo``,
#: and UDP datagrams leaving on ``lo`` that are not the listeners' answers.
NFT_TABLE = "twinscanbench"
NFT_LO_PROBES = "lo_probes"
NFT_LO_UDP_PROBES = "lo_udp_probes"
#: masscan's address on the lab subnet (the scanner's address + 1).
MASSCAN_OFFSET = 1
#: masscan's runs get its sending time at ``--rate`` plus this much, then they are killed.
MASSCAN_GRACE_S = 10.0

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True, slots=True)
class BenchConfig:
    out_dir: Path
    quick: bool = False
    spec_path: Path | None = None
    #: Rewrite the block between the bench markers of this README.
    readme: Path | None = None
    #: Keep workloads whose name contains one of these (empty: all).
    only: tuple[str, ...] = ()
    engines: tuple[BenchEngine, ...] = tuple(BenchEngine)
    #: Override every workload's number of measured pairs.
    pairs: int | None = None
    #: Cap every run's timeout at this many seconds.
    timeout_s: float | None = None
    command: str = "twinscan bench"


@dataclasses.dataclass(frozen=True, slots=True)
class BenchOutcome:
    runs_csv: Path
    summary_csv: Path
    summary_md: Path
    plot_png: Path | None
    summary: list[dict[str, Any]]
    complete: bool


def repo_root() -> Path:
    """The source tree this package was installed from (editable install: the repo)."""
    return Path(__file__).resolve().parents[3]


def default_spec_path() -> Path:
    return repo_root() / "fixtures" / "labs" / "bench.toml"


def default_out_dir(*, quick: bool) -> Path:
    """Full runs are recorded in ``benchmarks/results/``; quick ones go to ``out/bench-quick``."""
    root = repo_root()
    if not (root / "benchmarks").is_dir():
        return Path("bench-results-quick" if quick else "bench-results")
    return root / "out" / "bench-quick" if quick else root / "benchmarks" / "results"


def parse_engines(names: Sequence[str]) -> tuple[BenchEngine, ...]:
    """``--engine`` values to engines (none given: all of them)."""
    if not names:
        return tuple(BenchEngine)
    known = {e.value: e for e in BenchEngine}
    bad = [n for n in names if n not in known]
    if bad:
        raise UsageError(f"unknown engine {bad[0]!r} (choose from {', '.join(known)})")
    return tuple(dict.fromkeys(known[n] for n in names))


def select_workloads(config: BenchConfig) -> list[Workload]:
    chosen: list[Workload] = []
    for w in catalog(quick=config.quick):
        if config.only and not any(part in w.name for part in config.only):
            continue
        engines = tuple(e for e in w.engines if e in config.engines)
        if not engines:
            continue
        pairs = config.pairs if config.pairs is not None else w.pairs
        timeout = min(w.timeout_s, config.timeout_s) if config.timeout_s else w.timeout_s
        chosen.append(dataclasses.replace(w, engines=engines, pairs=pairs, timeout_s=timeout))
    if not chosen:
        raise UsageError("no workload matches --only/--engine")
    return chosen


def check_environment(workloads: Sequence[Workload]) -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("twinscan bench needs root (it builds network namespaces)")
    needed = {"ip", "nft", "nmap"}
    if any(BenchEngine.MASSCAN in w.engines for w in workloads):
        needed.add("masscan")
    missing = sorted(t for t in needed if shutil.which(t) is None)
    if missing:
        raise EnvironmentProblem(f"twinscan bench needs {', '.join(missing)} (run `make setup`)")


def run_bench(config: BenchConfig, log: Log = lambda _: None) -> BenchOutcome:
    """Run the selected workloads and write runs.csv, summary.csv, summary.md and bench.png."""
    from twinscan.engines import interrupt
    from twinscan.lab import load_spec

    workloads = select_workloads(config)
    check_environment(workloads)
    spec = load_spec(config.spec_path or default_spec_path())
    config.out_dir.mkdir(parents=True, exist_ok=True)
    machine = measure.machine_note()
    started = dt.datetime.now().astimezone()
    rows: list[dict[str, Any]] = []
    complete = False
    try:
        with (
            interrupt.terminate_as_interrupt(),  # (a kill takes the lab down as Ctrl-C does)
            bench_lab(spec, log) as lab,
            tempfile.TemporaryDirectory(prefix="twinscan-bench-") as tmp,
        ):
            for workload in workloads:
                rows += run_workload(workload, lab, spec, Path(tmp), log)
        complete = True
    finally:
        outcome = write_results(config, rows, machine=machine, when=started, complete=complete)
        log(f"results: {outcome.summary_md}")
    return outcome


@dataclasses.dataclass(frozen=True, slots=True)
class LabHandle:
    namespace: str
    bridge: str
    masscan: MasscanAdapter | None


@contextlib.contextmanager
def bench_lab(spec: Any, log: Log) -> Iterator[LabHandle]:
    """The bench lab, up for the duration of the block, with loopback listeners and counters."""
    from twinscan.lab import netns

    prefix = f"tb{os.getpid() % 1_000_000}"
    log(f"bringing up the bench lab {prefix} ({len(spec.hosts)} hosts)")
    listeners: subprocess.Popen[bytes] | None = None
    try:
        state = netns.up(spec, prefix)
        ns, bridge = str(state["scanner_ns"]), str(state["bridge"])
        _setup_counters(ns)
        listeners = _start_loopback_listeners(ns)
        adapter = _setup_masscan(ns, bridge, prefix, spec.scanner, log)
        yield LabHandle(ns, bridge, adapter)
    finally:
        if listeners is not None:
            listeners.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                listeners.wait(timeout=5)
        netns.down(prefix)
        log(f"bench lab {prefix} torn down")


def _sh(argv: list[str], stdin: str | None = None) -> None:
    proc = subprocess.run(argv, input=stdin, capture_output=True, text=True, timeout=30)
    if proc.returncode != 0:
        raise EnvironmentProblem(f"{shlex.join(argv)}: {proc.stderr.strip()}")


def _setup_counters(ns: str) -> None:
    answering = ", ".join(str(p) for p, kind in LOOPBACK_UDP_LISTENERS.items() if kind != "silent")
    ruleset = (
        f"table inet {NFT_TABLE} {{\n"
        f"  counter {NFT_LO_PROBES} {{ }}\n"
        f"  counter {NFT_LO_UDP_PROBES} {{ }}\n"
        "  chain out {\n"
        "    type filter hook output priority 0; policy accept;\n"
        f'    oifname "lo" tcp flags & (syn | ack) == syn counter name "{NFT_LO_PROBES}"\n'
        f'    oifname "lo" udp sport != {{ {answering} }} counter name "{NFT_LO_UDP_PROBES}"\n'
        "  }\n"
        "}\n"
    )
    _sh(["ip", "netns", "exec", ns, "nft", "-f", "-"], stdin=ruleset)


def _start_loopback_listeners(ns: str) -> subprocess.Popen[bytes]:
    udp = [[port, kind] for port, kind in LOOPBACK_UDP_LISTENERS.items()]
    config = {"address": LOOPBACK, "tcp": list(LOOPBACK_LISTENERS), "udp": udp, "ftp": None}
    argv = ["ip", "netns", "exec", ns, sys.executable, "-m", "twinscan.lab.services",
            json.dumps(config)]  # fmt: skip
    proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE)
    assert proc.stdout is not None
    import select

    ready, _, _ = select.select([proc.stdout], [], [], 15)
    if not ready or proc.stdout.readline().strip() != b"ready":
        proc.kill()
        raise EnvironmentProblem("the loopback listeners of the bench lab did not start")
    proc.stdout.close()
    return proc


def _setup_masscan(
    ns: str, bridge: str, prefix: str, scanner: str, log: Log
) -> MasscanAdapter | None:
    if shutil.which("masscan") is None:
        return None
    import ipaddress

    send, port = f"{prefix}m0", f"{prefix}m1"
    try:
        _sh(["ip", "-n", ns, "link", "add", send, "type", "veth", "peer", "name", port])
        _sh(["ip", "-n", ns, "link", "set", port, "master", bridge, "up"])
        _sh(["ip", "-n", ns, "link", "set", send, "up"])
        _sh(["ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv4.ip_forward=1",
             "net.ipv4.conf.all.send_redirects=0", f"net.ipv4.conf.{bridge}.send_redirects=0"])  # fmt: skip
        out = subprocess.run(["ip", "-n", ns, "-j", "link", "show", "dev", bridge],
                             capture_output=True, text=True, timeout=15, check=True)  # fmt: skip
        mac = str(json.loads(out.stdout)[0]["address"])
    except (EnvironmentProblem, subprocess.SubprocessError, KeyError, ValueError) as exc:
        log(f"masscan: no adapter in the bench lab ({exc}); its runs are recorded as failed")
        return None
    ip = str(ipaddress.IPv4Address(scanner) + MASSCAN_OFFSET)
    return MasscanAdapter(interface=send, ip=ip, router_mac=mac)


def run_workload(
    workload: Workload, lab: LabHandle, spec: Any, tmp: Path, log: Log
) -> list[dict[str, Any]]:
    """Every run of one workload (engines alternating), as rows of runs.csv."""
    t0 = time.perf_counter()
    truth = accuracy.truth_cells(
        workload,
        spec,
        loopback_listeners=LOOPBACK_LISTENERS,
        loopback_udp=LOOPBACK_UDP_LISTENERS,
    )
    targets = [LOOPBACK] if workload.loopback else [spec.host(h).address for h in workload.hosts]
    relay = spec.host(workload.relay).address if workload.relay else None
    log(f"{workload.name}: {len(truth)} truth cells ({time.perf_counter() - t0:.1f} s)")
    rows: list[dict[str, Any]] = []
    broken: dict[BenchEngine, str] = {}
    for slot in schedule(workload.engines, workload.pairs, workload.warmup):
        if slot.engine in broken:
            continue
        out = tmp / f"{workload.name}-{slot.round}-{slot.engine.value}.out"
        out.unlink(missing_ok=True)
        row = _run_one(workload, slot.engine, targets, relay, out, lab, truth)
        row.update(round=slot.round, warmup=slot.warmup)
        rows.append(row)
        log(
            f"  {workload.name} round {slot.round}{' (warm-up)' if slot.warmup else ''} "
            f"{slot.engine.value}: {row['status']} {row['wall_s']:.2f} s"
            + (f" — {row['error']}" if row["error"] else "")
        )
        if row["status"] != "ok":
            broken[slot.engine] = row["status"]  # one failure is enough: skip its other runs
    return rows


def _run_one(
    workload: Workload,
    engine: BenchEngine,
    targets: list[str],
    relay: str | None,
    out: Path,
    lab: LabHandle,
    truth: dict[tuple[str, int], str],
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "workload": workload.name, "group": workload.group,
        "technique": workload.technique.value, "engine": engine.value,
        "hosts": max(1, len(workload.hosts)), "ports": workload.nports, "probes": workload.probes,
    }  # fmt: skip
    if engine is BenchEngine.MASSCAN and lab.masscan is None:
        return base | {"wall_s": float("nan")} | _failed("missing", "no adapter in the lab")
    argv = argv_for(engine, workload, targets, str(out), python=sys.executable, relay=relay,
                    masscan=lab.masscan)  # fmt: skip
    counted, counter = _packet_counter(workload, engine, lab)
    timeout = workload.timeout_s
    if engine is BenchEngine.MASSCAN and lab.masscan is not None:
        # masscan 1.3.2 finishes its sends and answers, then often never exits (its receive
        # thread stays blocked in pcap: upstream issue #144); don't wait long for that.
        timeout = min(timeout, workload.probes / lab.masscan.rate + MASSCAN_GRACE_S)
    m = measure.run_measured(
        ["ip", "netns", "exec", lab.namespace, *argv], timeout_s=timeout, packets=counter
    )
    row = base | {
        "wall_s": m.wall_s, "cpu_s": m.cpu_s, "cpu_user_s": m.cpu_user_s,
        "cpu_sys_s": m.cpu_sys_s, "peak_rss_mib": m.peak_rss_mib,
        "max_rss_single_mib": m.max_rss_single_mib, "rss_samples": m.samples,
        "packets": m.packets, "packets_counted": counted, "exit_code": m.exit_code,
    }  # fmt: skip
    if m.timed_out:
        return row | _failed("timeout", f"killed after {timeout:.0f} s")
    if m.exit_code != 0 or not out.exists():
        last = m.stderr_tail.splitlines()[-1] if m.stderr_tail else "no output"
        return row | _failed("failed", f"exit {m.exit_code}: {last}")
    kind = OUTPUT_OF[engine]
    try:
        found = accuracy.read_verdicts(kind, out)
    except (ValueError, OSError, UsageError) as exc:
        return row | _failed("failed", f"unreadable output: {exc}")
    sc = accuracy.score(found, truth, open_only=kind is OutputKind.MASSCAN_LIST)
    return row | {
        "status": "ok", "error": "", "cells": sc.cells, "reported": sc.reported,
        "agree": sc.agree, "accuracy": sc.accuracy, "open_truth": sc.open_truth,
        "open_found": sc.open_found, "open_recall": sc.open_recall, "false_open": sc.false_open,
    }  # fmt: skip


def _packet_counter(
    workload: Workload, engine: BenchEngine, lab: LabHandle
) -> tuple[str, measure.Counter]:
    """What counts the run's packets, and how that is described in runs.csv."""
    if workload.loopback and workload.technique.proto.value == "udp":
        return "udp probes on lo (nftables)", functools.partial(
            measure.nft_counter, lab.namespace, NFT_TABLE, NFT_LO_UDP_PROBES
        )
    if workload.loopback:
        return "tcp SYN probes on lo (nftables)", functools.partial(
            measure.nft_counter, lab.namespace, NFT_TABLE, NFT_LO_PROBES
        )
    iface = lab.bridge
    if engine is BenchEngine.MASSCAN and lab.masscan is not None:
        iface = lab.masscan.interface
    return f"tx packets of {iface}", functools.partial(
        measure.iface_tx_packets, lab.namespace, iface
    )


_SCORE_COLUMNS = ("cells", "reported", "agree", "accuracy", "open_truth", "open_found",
                  "open_recall", "false_open")  # fmt: skip


def _failed(status: str, error: str) -> dict[str, Any]:
    return {"status": status, "error": error[:300]} | dict.fromkeys(_SCORE_COLUMNS)


def write_results(
    config: BenchConfig,
    rows: list[dict[str, Any]],
    *,
    machine: str,
    when: dt.datetime,
    complete: bool,
) -> BenchOutcome:
    import pandas as pd

    out = config.out_dir
    runs_csv, summary_csv = out / "runs.csv", out / "summary.csv"
    summary_md, plot_png = out / "summary.md", out / "bench.png"
    runs = pd.DataFrame(rows, columns=list(render.RUN_COLUMNS))
    runs.to_csv(runs_csv, index=False)
    summary = render.summarize(rows) if rows else []
    pd.DataFrame(summary, columns=list(render.SUMMARY_COLUMNS)).to_csv(summary_csv, index=False)
    png: Path | None = None
    if any(r["runs"] for r in summary):
        render.plot(summary, plot_png)
        png = plot_png
    notes = _notes(rows, complete)
    rel_png = _relative(png, config.readme.parent) if png and config.readme else None
    block = render.render_block(
        summary, command=config.command, when=when.strftime("%Y-%m-%d %H:%M %Z"),
        machine=machine, notes=notes, plot=rel_png,
    )  # fmt: skip
    summary_md.write_text(
        render.render_block(
            summary,
            command=config.command,
            when=when.strftime("%Y-%m-%d %H:%M %Z"),
            machine=machine,
            notes=notes,
            plot=png.name if png else None,
        )  # fmt: skip
    )
    if config.readme is not None and complete:
        text = config.readme.read_text()
        config.readme.write_text(render.replace_block(text, block))
    return BenchOutcome(runs_csv, summary_csv, summary_md, png, summary, complete)


def _relative(path: Path, start: Path) -> str:
    return os.path.relpath(path.resolve(), start.resolve())


def _notes(rows: Sequence[dict[str, Any]], complete: bool) -> list[str]:
    notes = [
        "Engines: `twinscan` = twinscan's native engine (`twinscan scan`), `twinscan-nmap` = "
        "`twinscan scan --engine nmap` (python-nmap drives nmap), `nmap` = plain `nmap -oX` "
        "with the same options (`-n -Pn --reason -T4`), `masscan` = masscan 1.3 at "
        "`--rate 10000 --wait 1` (SYN only, reports open ports only: no state accuracy). "
        "twinscan's engines write `-oX` too, read back for accuracy by the same reader as "
        "nmap's (until 2026-12-01 they wrote `--csv`).",
        "Every run executes in the bench lab's scanner namespace (`fixtures/labs/bench.toml`); "
        "loopback workloads scan that namespace's own 127.0.0.1, where the harness listens on "
        f"TCP {', '.join(map(str, LOOPBACK_LISTENERS))} and UDP "
        + ", ".join(f"{p} ({kind})" for p, kind in LOOPBACK_UDP_LISTENERS.items())
        + ".",
        "CPU = user+sys of the whole process tree (wait4 rusage); peak RSS = the highest sum of "
        "RSS over the tree, sampled every 20 ms; packets = SYN probes leaving `lo` (loopback) "
        "or frames sent into the lab (lab).",
        "accuracy = share of the scanned (host, port) cells whose state equals the lab's truth; "
        "open recall = share of truly open ports reported open.",
        "The machine is shared and has 2 cores: treat differences under ~20% as noise.",
    ]
    if any(r["engine"] == BenchEngine.MASSCAN.value and r["status"] == "timeout" for r in rows):
        notes.append(
            "masscan 1.3.2 often finishes its scan and then never exits (its receive thread "
            "stays blocked in pcap; upstream issue #144): such runs are killed at their sending "
            f"time + {MASSCAN_GRACE_S:.0f} s and recorded as timeouts, and masscan's other runs "
            "of that workload are skipped."
        )
    if not complete:
        notes.append("**Incomplete run**: interrupted or failed part-way.")
    return notes
