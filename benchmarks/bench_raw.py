"""The native raw engine against nmap: whole-process wall times, alternating runs, medians.

    sudo .venv/bin/python benchmarks/bench_raw.py loopback [--runs 5]
    sudo .venv/bin/python benchmarks/bench_raw.py lab [--runs 5] [--ports 1-10000]
    sudo .venv/bin/python benchmarks/bench_raw.py udp-ratelimit [--runs 3] [--ports 1-20]

loopback       ``twinscan scan -sS -p- 127.0.0.1`` vs ``nmap -sS -p- -T4 -n 127.0.0.1``.
lab            two hosts of the default lab, ``plain`` and ``fw`` (10% inbound loss), SYN over
               ``--ports`` with -T4 in both tools, run inside the lab's scanner namespace;
               every verdict of both is checked against the lab's truth.
udp-ratelimit  ``twinscan scan -sU -T4`` of the ``rl`` host (Linux's ICMP limit: a burst of 6,
               then one port-unreachable a second) against the time that limit alone imposes
               for its N closed ports, N - 6 seconds (each run starts after 7 s idle, so
               the bucket is full); nmap -T4 alongside for reference.

The lab workloads bring up the default lab under their own prefix (``tsB<hex>``) and always
tear it down. Targets are only 127.0.0.1 and the lab's 198.18.0.0/24. Prints every run, then
medians and the ratio twinscan/nmap (or twinscan/limit).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TWINSCAN = [str(REPO / ".venv" / "bin" / "twinscan"), "scan"]
DEFAULT_LAB = REPO / "fixtures" / "labs" / "default.toml"
LAB_HOSTS = ("plain", "fw")  # fw: 10% inbound loss
TIMEOUT_S = 900
#: Idle time that refills Linux's ICMP error bucket (6 tokens at one a second), with slack.
ICMP_REFILL_S = 7.0


def timed(argv: list[str]) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT_S)
    elapsed = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr}")
    return elapsed


def alternate(
    runs: int, ours: Callable[[int], float], theirs: Callable[[int], float]
) -> tuple[float, float]:
    """``runs`` pairs, twinscan first then nmap; prints each pair, returns the two medians."""
    t_ours: list[float] = []
    t_nmap: list[float] = []
    for i in range(runs):
        t_ours.append(ours(i))
        t_nmap.append(theirs(i))
        print(f"run {i + 1}: twinscan {t_ours[-1]:.2f}s  nmap {t_nmap[-1]:.2f}s", flush=True)
    mo, mn = statistics.median(t_ours), statistics.median(t_nmap)
    print(f"median: twinscan {mo:.2f}s  nmap {mn:.2f}s  ratio {mo / mn:.2f}x")
    return mo, mn


def loopback(args: argparse.Namespace) -> None:
    ports = ["-p-"] if args.ports == "-" else ["-p", args.ports]
    ours = [*TWINSCAN, "-sS", *ports, "127.0.0.1"]
    nmap = ["nmap", "-sS", *ports, "-T4", "-n", "127.0.0.1"]
    print("$", " ".join(ours), "\n$", " ".join(nmap))
    alternate(args.runs, lambda _i: timed(ours), lambda _i: timed(nmap))


class Lab:
    """The default lab under a private prefix, torn down on exit."""

    def __init__(self) -> None:
        from twinscan.lab import load_spec, netns

        self.spec = load_spec(DEFAULT_LAB)
        self.prefix = "tsB" + secrets.token_hex(2)
        self._netns = netns

    def __enter__(self) -> Lab:
        state = self._netns.up(self.spec, self.prefix)
        self.ns = str(state["scanner_ns"])
        return self

    def __exit__(self, *_exc: object) -> None:
        self._netns.down(self.prefix)

    def argv(self, argv: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.ns, *argv]


def _accuracy(lab: Lab, path: Path, technique: str, hosts: list[str], ports: list[int]) -> str:
    """``right/total`` of the scan's verdicts against the truth, cell by cell."""
    from twinscan.core.vocab import Technique
    from twinscan.formats.csv import read_csv
    from twinscan.formats.nmap_xml_read import read_nmap_xml_file
    from twinscan.lab.truth import expected

    tech = Technique(technique)
    frame = read_csv(path) if path.suffix == ".csv" else read_nmap_xml_file(path).frame
    got = {
        (h, int(p)): (str(s), str(r))
        for h, p, s, r in zip(
            frame["host"], frame["port"], frame["state"], frame["reason"], strict=True
        )
    }
    right = total = 0
    misses: list[str] = []
    for name in hosts:
        host = lab.spec.host(name)
        for port in ports:
            want = expected(host, tech, port)
            total += 1
            cell = got.get((host.address, port))
            if cell == (want.state.value, want.reason.value):
                right += 1
            else:
                misses.append(f"{host.address}:{port} {cell} (truth {want.state.value})")
    return f"{right}/{total}" + (f" missed: {', '.join(misses[:5])}" if misses else "")


def lab_syn(args: argparse.Namespace) -> None:
    from twinscan.request.ports import parse_port_list

    ports = parse_port_list(args.ports)
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        targets = [lab.spec.host(n).address for n in LAB_HOSTS]
        ours = [*TWINSCAN, "-sS", "-T4", "-p", args.ports, *targets]
        nmap = ["nmap", "-sS", "-T4", "-n", "-Pn", "-p", args.ports, *targets]
        print("$ ip netns exec <lab>-scan", " ".join(ours), "--csv OUT")
        print("$ ip netns exec <lab>-scan", " ".join(nmap), "-oX OUT")
        acc: list[tuple[str, str]] = []

        def run_ours(i: int) -> float:
            out = Path(tmp) / f"ours{i}.csv"
            t = timed(lab.argv([*ours, "--csv", str(out)]))
            acc.append(("twinscan", _accuracy(lab, out, "syn", list(LAB_HOSTS), ports)))
            return t

        def run_nmap(i: int) -> float:
            out = Path(tmp) / f"nmap{i}.xml"
            t = timed(lab.argv([*nmap, "-oX", str(out)]))
            acc.append(("nmap", _accuracy(lab, out, "syn", list(LAB_HOSTS), ports)))
            return t

        alternate(args.runs, run_ours, run_nmap)
        for who, a in acc:
            print(f"truth agreement {who}: {a}")


def udp_ratelimit(args: argparse.Namespace) -> None:
    from twinscan.core.vocab import PortState, Technique
    from twinscan.lab.truth import expected
    from twinscan.request.ports import parse_port_list

    ports = parse_port_list(args.ports)
    with Lab() as lab, tempfile.TemporaryDirectory() as tmp:
        rl = lab.spec.host("rl")
        closed = sum(expected(rl, Technique.UDP, p).state is PortState.CLOSED for p in ports)
        limit = max(0, closed - 6)
        ours = [*TWINSCAN, "-sU", "-T4", "-p", args.ports, rl.address]
        nmap = ["nmap", "-sU", "-T4", "-n", "-Pn", "-p", args.ports, rl.address]
        print("$ ip netns exec <lab>-scan", " ".join(ours), "--csv OUT")
        print(f"{closed} closed ports: the ICMP limit alone takes {limit} s")
        acc: list[tuple[str, str]] = []

        # The host's ICMP bucket refills one token a second up to 6: let it fill before each
        # run, so every run starts from the same full burst the limit's time assumes.
        def run_ours(i: int) -> float:
            time.sleep(ICMP_REFILL_S)
            out = Path(tmp) / f"ours{i}.csv"
            t = timed(lab.argv([*ours, "--csv", str(out)]))
            acc.append(("twinscan", _accuracy(lab, out, "udp", ["rl"], ports)))
            return t

        def run_nmap(i: int) -> float:
            time.sleep(ICMP_REFILL_S)
            out = Path(tmp) / f"nmap{i}.xml"
            t = timed(lab.argv([*nmap, "-oX", str(out)]))
            acc.append(("nmap", _accuracy(lab, out, "udp", ["rl"], ports)))
            return t

        mo, _ = alternate(args.runs, run_ours, run_nmap)
        print(f"twinscan / ICMP limit: {mo:.2f}s / {limit}s = {mo / max(limit, 1e-9):.2f}x")
        for who, a in acc:
            print(f"truth agreement {who}: {a}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    sub = ap.add_subparsers(dest="workload", required=True)
    for name, runs, ports in (
        ("loopback", 5, "-"),
        ("lab", 5, "1-10000"),
        ("udp-ratelimit", 3, "1-20"),
    ):
        p = sub.add_parser(name)
        p.add_argument("--runs", type=int, default=runs)
        p.add_argument("--ports", default=ports)
    args = ap.parse_args()
    {"loopback": loopback, "lab": lab_syn, "udp-ratelimit": udp_ratelimit}[args.workload](args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
