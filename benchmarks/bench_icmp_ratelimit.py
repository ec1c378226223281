"""UDP scans against ICMP rate limits of several speeds: time against the floor each imposes.

    sudo .venv/bin/python benchmarks/bench_icmp_ratelimit.py [--limits 100,250,1000,3000]
        [--ports 40000-40029] [--runs 1] [--out benchmarks/results/icmp_ratelimit]
    .venv/bin/python benchmarks/bench_icmp_ratelimit.py --render-only

Brings up a small lab of its own (prefix ``tsI<hex>``, always torn down): one host per
``net.ipv4.icmp_ratelimit`` value (milliseconds), each with no UDP service, so every scanned
port is closed and answers with a port-unreachable only when the host's bucket has a token.
Linux's per-peer bucket (``inet_peer_xrlim_allow``) holds ``XRLIM_BURST_FACTOR`` = 6 tokens
and gains one every ``icmp_ratelimit`` ms; the global ``icmp_msgs_per_sec``/``icmp_msgs_burst``
(per namespace on this kernel, 1000/50) never bind at these rates and are left alone.

Each run is ``twinscan scan -sU -T4 -p PORTS HOST`` inside the scanner namespace, after the
host has been idle long enough for its bucket to be full again (7 intervals). The floor a limit
imposes is ``(ports - 6) x interval``: no scanner can learn more closed ports in less time.
Accuracy is cell by cell against the lab's truth (every port closed / port-unreach).

Writes ``OUT.csv`` (one row per run) and ``OUT.md`` (medians per limit and workload: the
README's ``results:icmp_ratelimit`` block, updated too when OUT is the default; rendered by
``twinscan.bench.results_md``, which ``--render-only`` runs on OUT.csv without scanning).
Only the lab's 198.18.0.0/24 is scanned, from inside the lab's scanner namespace.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWINSCAN = [str(REPO / ".venv" / "bin" / "twinscan"), "scan"]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "icmp_ratelimit"
LINUX_BURST = 6  # XRLIM_BURST_FACTOR
TIMEOUT_S = 900


def spec_text(limits_ms: Sequence[int], silent: Sequence[int] = ()) -> str:
    """A lab spec with one host ``rNNN`` per limit (addresses 198.18.0.10, .11, ...), each with
    a bound, never-answering UDP socket on every port of ``silent`` (open|filtered)."""
    out = ['[lab]\nsubnet = "198.18.0.0/24"\n\n[scan]\ntcp_ports = "22"\n']
    udp = ", ".join(f'{p} = "silent"' for p in silent)
    for i, ms in enumerate(limits_ms):
        out.append(
            f'\n[hosts.r{ms}]\naddress = "198.18.0.{10 + i}"\ntcp = [22]\nicmp_ratelimit = true\n'
            + (f"udp = {{ {udp} }}\n" if udp else "")
        )
    return "".join(out)


@contextlib.contextmanager
def ratelimit_lab(
    limits_ms: Sequence[int], prefix: str | None = None, silent: Sequence[int] = ()
) -> Iterator[RateLab]:
    """The lab up under ``prefix`` (default ``tsI<hex>``), each host's limit set; always down.
    ``icmp_ratelimit`` 0 switches the per-peer limit off (a baseline host)."""
    from twinscan.lab import netns
    from twinscan.lab.spec import parse_spec

    spec = parse_spec(spec_text(limits_ms, silent), source="bench_icmp_ratelimit")
    prefix = prefix or "tsI" + secrets.token_hex(2)
    try:
        state = netns.up(spec, prefix)
        lab = RateLab(prefix, str(state["scanner_ns"]), spec)
        for ms in limits_ms:
            ns = netns.Names(prefix).host_ns(f"r{ms}")
            subprocess.run(
                ["ip", "netns", "exec", ns, "sysctl", "-qw", f"net.ipv4.icmp_ratelimit={ms}"],
                check=True,
                timeout=30,
            )
        yield lab
    finally:
        netns.down(prefix)


class RateLab:
    def __init__(self, prefix: str, scanner_ns: str, spec: object) -> None:
        from twinscan.lab.spec import LabSpec

        assert isinstance(spec, LabSpec)
        self.prefix = prefix
        self.scanner_ns = scanner_ns
        self.spec = spec

    def address(self, ms: int) -> str:
        return self.spec.host(f"r{ms}").address

    def sysctl(self, ms: int, key: str) -> str:
        from twinscan.lab import netns

        ns = netns.Names(self.prefix).host_ns(f"r{ms}")
        proc = subprocess.run(
            ["ip", "netns", "exec", ns, "sysctl", "-n", key],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return proc.stdout.strip() or "n/a"

    def scan_udp(self, ms: int, ports: str, csv_out: Path, extra: Sequence[str] = ()) -> float:
        """``twinscan scan -sU -T4`` of host ``rMS``; returns the wall time (s)."""
        argv = [
            *TWINSCAN,
            "-sU",
            "-T4",
            *extra,
            "-p",
            ports,
            self.address(ms),
            "--csv",
            str(csv_out),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["ip", "netns", "exec", self.scanner_ns, *argv],
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        elapsed = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
        return elapsed

    def accuracy(self, ms: int, ports: Sequence[int], csv_out: Path) -> tuple[int, int]:
        """(right, total) of the scan's verdicts against the truth."""
        from twinscan.core.vocab import Technique
        from twinscan.formats.csv import read_csv
        from twinscan.lab.truth import expected

        frame = read_csv(csv_out)
        got = {
            (str(h), int(p)): (str(s), str(r))
            for h, p, s, r in zip(
                frame["host"], frame["port"], frame["state"], frame["reason"], strict=True
            )
        }
        host = self.spec.host(f"r{ms}")
        right = 0
        for port in ports:
            want = expected(host, Technique.UDP, port)
            right += got.get((host.address, port)) == (want.state.value, want.reason.value)
        return right, len(ports)


FIELDS = (
    "icmp_ratelimit_ms", "ports", "silent", "burst", "floor_s", "time_s", "ratio", "right", "total",
)  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--limits", default="100,250,1000,3000", help="icmp_ratelimit values, ms")
    ap.add_argument("--ports", default="40000-40029")
    ap.add_argument(
        "--silent", type=int, default=0, help="the first N ports get a silent UDP socket"
    )
    ap.add_argument("--runs", type=int, default=1)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT, help="OUT.csv and OUT.md")
    ap.add_argument("--append", action="store_true", help="keep OUT.csv's rows (another workload)")
    ap.add_argument(
        "--render-only", action="store_true", help="no scan: OUT.md and the README from OUT.csv"
    )
    args = ap.parse_args(argv)
    if args.render_only:
        render(args.out.with_suffix(".csv"))
        return 0
    from twinscan.request.ports import parse_port_list

    limits = [int(x) for x in args.limits.split(",")]
    ports = parse_port_list(args.ports)
    silent = ports[: args.silent]
    rows: list[dict[str, object]] = []
    csv_path = args.out.with_suffix(".csv")
    if args.append and csv_path.exists():
        with csv_path.open(newline="", encoding="utf-8") as f:
            rows = [dict(r) for r in csv.DictReader(f)]
    with ratelimit_lab(limits, silent=silent) as lab, tempfile.TemporaryDirectory() as tmp:
        for ms in limits:
            print(
                f"r{ms}: icmp_ratelimit={lab.sysctl(ms, 'net.ipv4.icmp_ratelimit')} "
                f"icmp_msgs_per_sec={lab.sysctl(ms, 'net.ipv4.icmp_msgs_per_sec')} "
                f"icmp_msgs_burst={lab.sysctl(ms, 'net.ipv4.icmp_msgs_burst')}",
                flush=True,
            )
        for run in range(args.runs):
            for ms in limits:
                time.sleep(LINUX_BURST * ms / 1000 + 1.0)  # a full bucket, as the floor assumes
                out = Path(tmp) / f"r{ms}-{run}.csv"
                t = lab.scan_udp(ms, args.ports, out)
                right, total = lab.accuracy(ms, ports, out)
                floor = max(0, len(ports) - len(silent) - LINUX_BURST) * ms / 1000
                row: dict[str, object] = {
                    "icmp_ratelimit_ms": ms,
                    "ports": len(ports),
                    "silent": len(silent),
                    "burst": LINUX_BURST,
                    "floor_s": round(floor, 2),
                    "time_s": round(t, 2),
                    "ratio": round(t / floor, 2) if floor else "",
                    "right": right,
                    "total": total,
                }
                rows.append(row)
                print(row, flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    render(csv_path)
    return 0


def render(csv_path: Path) -> None:
    """OUT.md from OUT.csv (``twinscan.bench.results_md``), and the README's block when OUT is
    the recorded results."""
    from twinscan.bench.results_md import publish

    readme = REPO / "README.md" if csv_path.resolve() == DEFAULT_OUT.with_suffix(".csv") else None
    print(f"wrote {publish('icmp_ratelimit', csv_path, readme)}")


if __name__ == "__main__":
    sys.exit(main())
