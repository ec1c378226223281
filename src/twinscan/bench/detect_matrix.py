"""``twinscan bench detect``: which scans do the detectors see? The detection matrix.

Scans run in a lab (the bench lab under its own prefix, or a lab handed in by a test) while a
capture runs at the target side: a vertical scan (one host, many ports) is captured with
tcpdump on that host's ``eth0`` inside its namespace; a horizontal scan (one port over every
lab host) on the lab's bridge, which is where a network sensor of the segment sits. Each
capture is then fed to every detector of ``twinscan detect``. Beside them runs the real
scanlogd (Debian package ``scanlogd``, raw-socket build) in the same target namespace, in a
private mount namespace whose ``/dev/log`` is a socket of ours, one scanlogd per scan.

Slow paces (nmap -T2 and slower, long --scan-delay values) would take hours; their rows are
made by *re-timing* a real capture (``retime``): every probe conversation keeps its packets
and their spacing, and its start moves to the pace's schedule (probe k at k x delay). Such
rows say so (``capture`` = ``re-timed from ...``); the real scanlogd cannot see them.

``plan`` is pure (the scans from a spec); ``retime`` (``bench.pcap_retime``) and ``render`` are
pure over bytes and rows; ``run_matrix`` starts processes (tcpdump, the real scanlogd of
``bench.real_scanlogd``, the scanners) and always stops them. About 500 lines: the plan, the
run and the table of one matrix share its columns, detectors and row shape, so they stay
together; the pure re-timing and the real scanlogd have their own modules.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Final

from twinscan.bench.pcap_retime import retime, scanner_probes
from twinscan.bench.real_scanlogd import real_scanlogd
from twinscan.core.errors import EnvironmentProblem

Log = Callable[[str], None]

#: Detectors of the matrix, in column order: twinscan detect's, then the real scanlogd.
MODEL_DETECTORS: Final = (
    "sfportscan-low",
    "sfportscan-medium",
    "sfportscan-high",
    "zeek-scan",
    "trw",
    "scanlogd",
)
REAL_SCANLOGD: Final = "scanlogd-real"
DETECTORS: Final = (*MODEL_DETECTORS, REAL_SCANLOGD)

CSV_COLUMNS: Final = (
    "scan",
    "tool",
    "technique",
    "pace",
    "order",
    "shape",
    "capture",
    "scan_probes",
    "scan_s",
    "detector",
    "detected",
    "alert",
    "probes",
    "seconds",
    "note",
)

#: nmap's flag per technique (twinscan takes the same letters).
LETTER: Final = {
    "syn": "S", "connect": "T", "fin": "F", "xmas": "X", "null": "N",
    "ack": "A", "window": "W", "maimon": "M", "udp": "U",
}  # fmt: skip
VERTICAL_PORTS: Final = "1-150"
VERTICAL_PORTS_QUICK: Final = "1-60"
HORIZONTAL_PORT: Final = "445"
#: The horizontal scan of a port every lab host answers (open): sweeps that draw no refusals.
HORIZONTAL_OPEN_PORT: Final = "80"
#: The real scans just under and over scanlogd's 3 s gap: few ports, or they would take long.
SLOW_PORTS: Final = "20-31"
#: nmap's scan delay per timing template (nmap(1), "Timing templates"): the re-timed paces.
NMAP_DELAY: Final = {0: 300.0, 1: 15.0, 2: 0.4}
SCAN_TIMEOUT_S: Final = 150.0


@dataclasses.dataclass(frozen=True, slots=True)
class Scan:
    name: str
    tool: str  # nmap | twinscan
    technique: str
    pace: str  # "-T4", "--scan-delay 0.5s"
    order: str  # random | sequential
    shape: str  # vertical | horizontal
    argv: tuple[str, ...] = ()  # run in the scanner namespace; empty for re-timed rows
    retime_from: str = ""  # the scan whose capture is re-timed
    delay_s: float = 0.0  # the re-timed schedule: one probe every delay_s

    @property
    def retimed(self) -> bool:
        return bool(self.retime_from)


def _nmap(
    tech: str, timing: int, ports: str, targets: Sequence[str], *, seq: bool
) -> tuple[str, ...]:
    return ("nmap", "-n", "-Pn", f"-s{LETTER[tech]}", f"-T{timing}", "--max-retries", "1",
            *(("-r",) if seq else ()), "-p", ports, *targets)  # fmt: skip


def _twinscan(
    tech: str, ports: str, targets: Sequence[str], *, delay: str | None, seq: bool
) -> tuple[str, ...]:
    return (sys.executable, "-m", "twinscan", "scan", f"-s{LETTER[tech]}", "-T4",
            "--max-retries", "1", *(("--scan-delay", delay) if delay else ()),
            *(("-r",) if seq else ()), "-p", ports, "--csv", os.devnull, *targets)  # fmt: skip


def plan(vertical: str, horizontal: Sequence[str], *, quick: bool = False) -> list[Scan]:
    """The matrix's scans (pure): ``vertical`` is the one host, ``horizontal`` the sweep."""
    ports = VERTICAL_PORTS_QUICK if quick else VERTICAL_PORTS
    scans: list[Scan] = []

    def nmap(tech: str, timing: int, shape: str, *, seq: bool = False, port: str = "") -> None:
        order = "sequential" if seq else "random"
        tg = [vertical] if shape == "vertical" else list(horizontal)
        pp = port or (ports if shape == "vertical" else HORIZONTAL_PORT)
        extra = f" port {port}" if port else ""
        scans.append(Scan(f"nmap -s{LETTER[tech]} -T{timing}{' -r' if seq else ''} {shape}{extra}",
                          "nmap", tech, f"-T{timing}", order, shape,
                          _nmap(tech, timing, pp, tg, seq=seq)))  # fmt: skip

    def twin(
        tech: str, delay: str | None, shape: str, *, seq: bool = False, port: str = ""
    ) -> None:
        order = "sequential" if seq else "random"
        tg = [vertical] if shape == "vertical" else list(horizontal)
        pp = port or (ports if shape == "vertical" else HORIZONTAL_PORT)
        pace = f"--scan-delay {delay}" if delay else "-T4"
        extra = f" ports {port}" if port else ""
        scans.append(Scan(f"twinscan -s{LETTER[tech]} {pace}{' -r' if seq else ''} {shape}{extra}",
                          "twinscan", tech, pace, order, shape,
                          _twinscan(tech, pp, tg, delay=delay, seq=seq)))  # fmt: skip

    def retimed(src: str, pace: str, delay: float, tool: str) -> None:
        base = next(s for s in scans if s.name == src)
        seq = " -r" if base.order == "sequential" else ""
        name = f"{tool} -s{LETTER[base.technique]} {pace}{seq} {base.shape} (re-timed)"
        scans.append(Scan(name, tool, base.technique, pace, base.order, base.shape,
                          retime_from=src, delay_s=delay))  # fmt: skip

    if quick:
        nmap("syn", 4, "vertical")
        nmap("syn", 4, "vertical", seq=True)
        twin("syn", None, "vertical")
        nmap("syn", 4, "horizontal")
        retimed("nmap -sS -T4 vertical", "-T1", NMAP_DELAY[1], "nmap")
        return scans
    for tech in LETTER:
        nmap(tech, 4, "vertical")
    for timing in (3, 5):
        nmap("syn", timing, "vertical")
    nmap("syn", 2, "vertical")  # real, ~60 s: the check on the re-timed -T2 row
    for timing in (3, 4):
        nmap("syn", timing, "vertical", seq=True)
    for tech in ("syn", "connect", "fin", "udp"):
        twin(tech, None, "vertical")
    twin("syn", None, "vertical", seq=True)
    twin("syn", "20ms", "vertical")
    twin("syn", "2.5s", "vertical", seq=True, port=SLOW_PORTS)  # under scanlogd's 3 s gap
    twin("syn", "3.5s", "vertical", seq=True, port=SLOW_PORTS)  # over it
    for tech in ("syn", "connect", "udp"):
        nmap(tech, 4, "horizontal")
    nmap("syn", 4, "horizontal", port=HORIZONTAL_OPEN_PORT)
    nmap("syn", 4, "horizontal", seq=True)
    nmap("syn", 3, "horizontal")
    twin("syn", None, "horizontal")
    for timing in (2, 1, 0):
        retimed("nmap -sS -T3 vertical", f"-T{timing}", NMAP_DELAY[timing], "nmap")
    retimed("nmap -sS -T3 -r vertical", "-T1", NMAP_DELAY[1], "nmap")
    for delay in (1.0, 5.0, 60.0):
        retimed("twinscan -sS -T4 vertical", f"--scan-delay {delay:g}s", delay, "twinscan")
    for timing in (1, 0):
        retimed("nmap -sS -T4 horizontal", f"-T{timing}", NMAP_DELAY[timing], "nmap")
    return scans


# --- detection per capture ------------------------------------------------------------------------


def detect_rows(scan: Scan, data: bytes, scanner: str, capture: str) -> list[dict[str, Any]]:
    """One CSV row per model detector for one capture."""
    import ipaddress

    from twinscan.detect.runner import detect_bytes

    sc = int(ipaddress.IPv4Address(scanner))
    n, first, last = scanner_probes(data, sc)
    report = detect_bytes(data, scan.name, list(MODEL_DETECTORS))
    base = _base(scan, capture, n, (last - first) if first is not None and last is not None else 0)
    rows = []
    for det in MODEL_DETECTORS:
        hits = [r for r in report.rows if r.detector == det and r.scanner == scanner]
        if not hits:
            rows.append(base | {"detector": det, "detected": "no", "alert": "", "probes": "",
                                "seconds": "", "note": ""})  # fmt: skip
            continue
        hit = min(hits, key=lambda r: r.alert_at)
        rows.append(base | {
            "detector": det, "detected": "yes", "alert": hit.alert,
            "probes": hit.probes_before_alert,
            "seconds": round(hit.alert_at - (first if first is not None else hit.first_seen), 3),
            "note": f"{len(hits)} alert(s)",
        })  # fmt: skip
    return rows


def _base(scan: Scan, capture: str, probes: int, seconds: float) -> dict[str, Any]:
    return {
        "scan": scan.name, "tool": scan.tool, "technique": scan.technique, "pace": scan.pace,
        "order": scan.order, "shape": scan.shape, "capture": capture, "scan_probes": probes,
        "scan_s": round(seconds, 3),
    }  # fmt: skip


# --- the real scanlogd -------------------------------------------------------------------------


def scanlogd_row(
    scan: Scan, base: dict[str, Any], msgs: list[tuple[float, str]], start: float
) -> dict[str, Any]:
    if not msgs:
        return base | {"detector": REAL_SCANLOGD, "detected": "no", "alert": "", "probes": "",
                       "seconds": "", "note": ""}  # fmt: skip
    t, text = msgs[0]
    body = text.split("]: ", 1)[-1].split(": ", 1)[-1] if ": " in text else text
    return base | {
        "detector": REAL_SCANLOGD, "detected": "yes", "alert": "scan", "probes": "",
        "seconds": round(max(0.0, t - start), 3),
        "note": f"{len(msgs)} message(s): {body.strip()[:160]}",
    }  # fmt: skip


def not_run_row(base: dict[str, Any], why: str) -> dict[str, Any]:
    return base | {"detector": REAL_SCANLOGD, "detected": "n/a", "alert": "", "probes": "",
                   "seconds": "", "note": why}  # fmt: skip


# --- running -----------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, slots=True)
class LabView:
    scanner_ns: str
    bridge: str
    scanner: str  # the scanner's address
    vertical: str  # address of the vertical scans' host
    vertical_ns: str
    horizontal: tuple[str, ...]


def lab_view(spec: Any, state: dict[str, Any], prefix: str) -> LabView:
    first = spec.hosts[0]
    return LabView(
        scanner_ns=str(state["scanner_ns"]),
        bridge=str(state["bridge"]),
        scanner=str(spec.scanner),
        vertical=first.address,
        vertical_ns=f"{prefix}-h-{first.name}",
        horizontal=tuple(h.address for h in spec.hosts),
    )


@contextlib.contextmanager
def tcpdump(ns: str, iface: str, out: Path) -> Iterator[None]:
    proc = subprocess.Popen(
        ["ip", "netns", "exec", ns, "tcpdump", "-i", iface, "-s", "128", "-U", "-n", "-Z", "root",
         "-w", str(out), "ip"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        os.set_blocking(proc.stderr.fileno(), False)
        deadline = time.monotonic() + 10
        seen = b""
        while b"listening" not in seen and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
            seen += proc.stderr.read() or b""
        if proc.poll() is not None:
            raise EnvironmentProblem(f"tcpdump in {ns} on {iface} did not start: {seen!r}")
        yield
        time.sleep(0.5)
    finally:
        proc.send_signal(signal.SIGTERM)  # (its SIGINT may be ignored: a background job)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run_scan(scan: Scan, lab: LabView, tmp: Path, log: Log) -> tuple[list[dict[str, Any]], bytes]:
    """Capture one real scan at the target side and detect it; (rows, the capture)."""
    cap_ns, iface = (lab.vertical_ns, "eth0") if scan.shape == "vertical" else (
        lab.scanner_ns, lab.bridge)  # fmt: skip
    # the real scanlogd sees what reaches one host: the vertical target, or the sweep's first
    real_ns = lab.vertical_ns
    pcap = tmp / (scan.name.replace(" ", "_").replace("/", "_") + ".pcap")
    with real_scanlogd(real_ns) as real, tcpdump(cap_ns, iface, pcap):
        start = time.time()
        t0 = time.monotonic()
        try:
            proc = subprocess.run(["ip", "netns", "exec", lab.scanner_ns, *scan.argv],
                                  capture_output=True, text=True, timeout=SCAN_TIMEOUT_S)  # fmt: skip
            if proc.returncode != 0:
                log(f"  {scan.name}: exit {proc.returncode}: {proc.stderr.strip()[-200:]}")
        except subprocess.TimeoutExpired:
            log(f"  {scan.name}: killed after {SCAN_TIMEOUT_S:.0f} s (its capture so far is used)")
        took = time.monotonic() - t0
        time.sleep(0.5)
        msgs = real.messages() if real is not None else []
    data = pcap.read_bytes()
    rows = detect_rows(scan, data, lab.scanner, "real")
    base = {k: rows[0][k] for k in CSV_COLUMNS[:9]}
    if real is None:
        rows.append(not_run_row(base, "scanlogd is not installed"))
    else:
        import ipaddress

        _n, first, _last = scanner_probes(data, int(ipaddress.IPv4Address(lab.scanner)))
        rows.append(scanlogd_row(scan, base, msgs, first if first is not None else start))
    log(f"  {scan.name}: {took:.1f} s, {base['scan_probes']} probes")
    return rows, data


def run_scans(scans: Sequence[Scan], lab: LabView, log: Log) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    captures: dict[str, bytes] = {}
    import ipaddress

    sc = int(ipaddress.IPv4Address(lab.scanner))
    with tempfile.TemporaryDirectory(prefix="twinscan-detect-matrix-") as tmp:
        for scan in scans:
            if scan.retimed:
                src = captures.get(scan.retime_from)
                if src is None:
                    continue
                data = retime(src, sc, scan.delay_s)
                got = detect_rows(scan, data, lab.scanner, f"re-timed from {scan.retime_from}")
                base = {k: got[0][k] for k in CSV_COLUMNS[:9]}
                rows += got
                rows.append(not_run_row(base, "re-timed capture: the real scanlogd saw no traffic"))
                log(f"  {scan.name}: re-timed ({scan.delay_s:g} s per probe)")
                continue
            got, data = run_scan(scan, lab, Path(tmp), log)
            captures[scan.name] = data
            rows += got
    return rows


def check_environment() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("twinscan bench detect needs root (it builds network namespaces)")
    missing = [t for t in ("ip", "nft", "nmap", "tcpdump", "unshare") if shutil.which(t) is None]
    if missing:
        raise EnvironmentProblem(f"twinscan bench detect needs {', '.join(missing)}")


def run_matrix(
    out_dir: Path,
    *,
    quick: bool = False,
    spec_path: Path | None = None,
    command: str = "twinscan bench detect",
    log: Log = lambda _: None,
    prefix: str | None = None,
    readme: Path | None = None,
) -> tuple[Path, Path]:
    """Bring up a lab under its own prefix, run the matrix, tear it down, write CSV + table
    (and copy the table into ``readme``'s block between the detect-matrix markers)."""
    from twinscan.bench.harness import default_spec_path
    from twinscan.lab import load_spec, netns

    check_environment()
    spec = load_spec(spec_path or default_spec_path())
    prefix = prefix or f"tm{os.getpid() % 1_000_000}"
    started = dt.datetime.now().astimezone()
    log(f"bringing up lab {prefix} ({len(spec.hosts)} hosts)")
    try:
        state = netns.up(spec, prefix)
        lab = lab_view(spec, state, prefix)
        rows = run_scans(plan(lab.vertical, lab.horizontal, quick=quick), lab, log)
    finally:
        netns.down(prefix)
        log(f"lab {prefix} torn down")
    csv_path, md_path = write(out_dir, rows, command=command, when=started, lab=lab, quick=quick)
    if readme is not None:
        readme.write_text(replace_block(readme.read_text(), md_path.read_text()))
    return csv_path, md_path


BEGIN: Final = "<!-- detect-matrix:begin -->"
END: Final = "<!-- detect-matrix:end -->"


def replace_block(text: str, table: str) -> str:
    """``text`` with the block between the markers replaced by ``table`` (generated note kept)."""
    head, sep, rest = text.partition(BEGIN)
    _old, sep2, tail = rest.partition(END)
    if not sep or not sep2:
        raise EnvironmentProblem(f"the README has no {BEGIN} ... {END} block")
    note = "<!-- generated by `twinscan bench detect`: edit twinscan.bench.detect_matrix -->"
    return f"{head}{BEGIN}\n{note}\n\n{table.rstrip()}\n\n{END}{tail}"


# --- output --------------------------------------------------------------------------------------


def write(
    out_dir: Path,
    rows: list[dict[str, Any]],
    *,
    command: str,
    when: dt.datetime,
    lab: LabView,
    quick: bool = False,
) -> tuple[Path, Path]:
    import csv

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, md_path = out_dir / "detect_matrix.csv", out_dir / "detect_matrix.md"
    with csv_path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(CSV_COLUMNS))
        w.writeheader()
        w.writerows(rows)
    md_path.write_text(render(rows, command=command, when=when.strftime("%Y-%m-%d %H:%M %Z"),
                              lab=lab, quick=quick))  # fmt: skip
    return csv_path, md_path


def _cell(r: dict[str, Any]) -> str:
    if r["detected"] == "yes":
        probes = f"{r['probes']} p, " if r["probes"] != "" else ""
        return f"**yes** ({probes}{float(r['seconds']):.2f} s)"
    return "n/a" if r["detected"] == "n/a" else "no"


def render(
    rows: Sequence[dict[str, Any]], *, command: str, when: str, lab: LabView, quick: bool = False
) -> str:
    """The matrix as markdown: one line per scan, one column per detector."""
    ports = VERTICAL_PORTS_QUICK if quick else VERTICAL_PORTS
    by_scan: dict[str, dict[str, dict[str, Any]]] = {}
    for r in rows:
        by_scan.setdefault(r["scan"], {})[r["detector"]] = r
    head = ["scan", "capture", "probes", "scan s", *DETECTORS]
    lines = [
        f"Measured {when} with `{command}`: vertical scans = ports {ports} of "
        f"{lab.vertical} (captured on its `eth0`), horizontal = port {HORIZONTAL_PORT} of "
        f"{len(lab.horizontal)} lab hosts (captured on the lab bridge); scanner {lab.scanner}. "
        "Cells: detected after N probes (p) and S seconds from the first probe. "
        "**Re-timed** rows are not separate scans: the real capture named there with its probes "
        "moved to the pace's schedule (nmap -T2 0.4 s, -T1 15 s, -T0 300 s between probes); "
        "the real scanlogd did not see them (n/a). `scanlogd-real` is Debian's scanlogd 2.2 "
        "in the scanned host's namespace (for horizontal scans: the sweep's first host).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---", "---", "--:", "--:", *["---"] * len(DETECTORS)]) + "|",
    ]
    for name, per in by_scan.items():
        any_row = next(iter(per.values()))
        cap = "real" if any_row["capture"] == "real" else "**re-timed** (" + any_row[
            "capture"].removeprefix("re-timed from ") + ")"  # fmt: skip
        cells = [_cell(per[d]) if d in per else "" for d in DETECTORS]
        lines.append(
            f"| `{name}` | {cap} | {any_row['scan_probes']} | {float(any_row['scan_s']):.2f} | "
            + " | ".join(cells)
            + " |"
        )
    agree, differ = compare_scanlogd(rows)
    lines += ["", f"scanlogd model vs the real scanlogd on the same real captures: agree on "
              f"{agree} scan(s)" + (f", differ on {', '.join(f'`{d}`' for d in differ)}"
                                    if differ else ", differ on none") + "."]  # fmt: skip
    return "\n".join(lines) + "\n"


def compare_scanlogd(rows: Sequence[dict[str, Any]]) -> tuple[int, list[str]]:
    """(scans where model and real scanlogd agree, scans where they differ), real rows only."""
    model = {r["scan"]: r["detected"] for r in rows if r["detector"] == "scanlogd"}
    real = {r["scan"]: r["detected"] for r in rows if r["detector"] == REAL_SCANLOGD}
    agree, differ = 0, []
    for scan, got in real.items():
        if got == "n/a":
            continue
        if model.get(scan) == got:
            agree += 1
        else:
            differ.append(scan)
    return agree, differ
