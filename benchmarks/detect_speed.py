"""``python -m benchmarks.detect_speed``: how fast ``twinscan detect`` reads a big capture.

Generates a synthetic capture (default 1,000,000 packets; not committed: regenerate it), then
times, alternating, ``tcpdump -r FILE -w /dev/null`` (read and rewrite, no decoding) and
``twinscan detect FILE`` (the whole CLI: Python start-up, reading, decoding, contacts, every
detector, the table), and the library's stages once. Appends one row per tool to
``benchmarks/results/detect_speed.csv`` and renders its latest rows into ``detect_speed.md`` and
the README's ``results:detect_speed`` block (``twinscan.bench.results_md``); ``--render-only``
does only that.

The capture mixes, over about 60 s: a nmap-like SYN scan of 4 hosts x 50,000 ports with their
RSTs (and SYN+ACK/RST for 1% open ports), a UDP scan of 50,000 ports with ICMP port
unreachables, and ordinary traffic: 50,000 HTTP-like connections (handshake, request,
512-byte response, close; 10 packets each) from 500 clients to 20 servers.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from twinscan.detect import capture as cap

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "detect_speed.csv"
ETH = np.frombuffer(b"\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x01\x08\x00", dtype=np.uint8)
OS_OPTS = bytes.fromhex("020405b40402080a0000000000000000010303") + b"\0"  # 20 bytes
NMAP_OPTS = bytes.fromhex("020405b4")


def _put(rows: Any, off: int, values: Any, width: int) -> None:
    v = np.asarray(values, dtype=np.uint64)
    for k in range(width):
        rows[:, off + k] = (v >> np.uint64(8 * (width - 1 - k))) & np.uint64(0xFF)


def _ip(n: int, proto: int, src: Any, dst: Any, l4len: int, ipid: Any, ttl: int = 64) -> Any:
    rows = np.zeros((n, 14 + 20 + l4len), dtype=np.uint8)
    rows[:, :14] = ETH
    rows[:, 14] = 0x45
    _put(rows, 16, np.full(n, 20 + l4len), 2)
    _put(rows, 18, ipid, 2)
    rows[:, 22] = ttl
    rows[:, 23] = proto
    _put(rows, 26, src, 4)
    _put(rows, 30, dst, 4)
    return rows


def tcp_rows(n: int, src: Any, dst: Any, sport: Any, dport: Any, flags: int, *, seq: Any = 0,
             ack: Any = 0, win: int = 64240, opts: bytes = b"", payload: int = 0, ipid: Any = 0) -> Any:  # fmt: skip
    rows = _ip(n, 6, src, dst, 20 + len(opts) + payload, ipid)
    o = 34
    _put(rows, o, sport, 2)
    _put(rows, o + 2, dport, 2)
    _put(rows, o + 4, np.broadcast_to(seq, (n,)), 4)
    _put(rows, o + 8, np.broadcast_to(ack, (n,)), 4)
    rows[:, o + 12] = ((20 + len(opts)) // 4) << 4
    rows[:, o + 13] = flags
    _put(rows, o + 14, np.full(n, win), 2)
    if opts:
        rows[:, o + 20 : o + 20 + len(opts)] = np.frombuffer(opts, dtype=np.uint8)
    return rows


def udp_rows(n: int, src: Any, dst: Any, sport: Any, dport: Any, ipid: Any) -> Any:
    rows = _ip(n, 17, src, dst, 8, ipid)
    _put(rows, 34, sport, 2)
    _put(rows, 36, dport, 2)
    _put(rows, 38, np.full(n, 8), 2)
    return rows


def icmp_rows(n: int, src: Any, quoted: Any) -> Any:
    rows = _ip(n, 1, src, quoted[:, 26:30].copy().view(">u4").reshape(-1), 8 + 28, 0)
    rows[:, 34] = 3
    rows[:, 35] = 3
    rows[:, 42:70] = quoted[:, 14:42]
    return rows


def generate(n_target: int, seed: int = 13) -> bytes:
    """The benchmark capture as pcap bytes, about ``n_target`` packets (see module docstring)."""
    rng = np.random.default_rng(seed)
    scale = n_target / 1_000_000
    blocks: list[tuple[Any, Any]] = []  # (timestamps, rows)
    t0 = 1_700_000_000.0
    ip = lambda a, b, c, d: (a << 24) | (b << 16) | (c << 8) | d  # noqa: E731

    # SYN scan: 4 hosts x ports, nmap-like, ~5000 probes/s
    n_syn = int(200_000 * scale)
    scanner = ip(198, 18, 7, 1)
    dst = ip(198, 18, 1, 1) + (np.arange(n_syn) % 4)
    dport = 1 + (np.arange(n_syn) // 4) % 65535
    t = t0 + np.arange(n_syn) / 5000.0
    ipid = rng.integers(0, 65536, n_syn)
    probes = tcp_rows(
        n_syn, scanner, dst, 45678, dport, 0x02, seq=123456, win=1024, opts=NMAP_OPTS, ipid=ipid
    )
    blocks.append((t, probes))
    open_ = rng.random(n_syn) < 0.01
    closed = ~open_
    nc = int(closed.sum())
    blocks.append(
        (
            t[closed] + 2e-4,
            tcp_rows(nc, dst[closed], scanner, dport[closed], 45678, 0x14, ack=123457, win=0),
        )
    )
    no = int(open_.sum())
    blocks.append(
        (
            t[open_] + 2e-4,
            tcp_rows(no, dst[open_], scanner, dport[open_], 45678, 0x12, ack=123457, opts=OS_OPTS),
        )
    )
    blocks.append(
        (
            t[open_] + 4e-4,
            tcp_rows(no, scanner, dst[open_], 45678, dport[open_], 0x04, seq=123457, win=0),
        )
    )

    # UDP scan with port unreachables
    n_udp = int(50_000 * scale)
    uscanner, utarget = ip(198, 18, 7, 2), ip(198, 18, 1, 5)
    tu = t0 + 5 + np.arange(n_udp) / 1000.0
    probes = udp_rows(
        n_udp, uscanner, utarget, 51000, 1 + np.arange(n_udp) % 65535, rng.integers(0, 65536, n_udp)
    )
    blocks.append((tu, probes))
    blocks.append((tu + 3e-4, icmp_rows(n_udp, utarget, probes)))

    # ordinary HTTP-like connections, 10 packets each
    n_conn = int(50_000 * scale)
    client = ip(198, 18, 50, 0) + rng.integers(1, 501, n_conn)
    server = ip(198, 18, 2, 0) + (client % 20) + 1
    port = np.where(client % 2 == 0, 80, 443)
    sport = rng.integers(32768, 61000, n_conn)
    tc = t0 + rng.random(n_conn) * 60.0
    cs = rng.integers(0, 2**32, n_conn, dtype=np.uint64)
    ss = rng.integers(0, 2**32, n_conn, dtype=np.uint64)
    one = np.uint64(1)
    seq_c, seq_s = (cs + one) & np.uint64(0xFFFFFFFF), (ss + one) & np.uint64(0xFFFFFFFF)
    steps = [
        (0.0000, True, 0x02, cs, 0, OS_OPTS, 0),
        (0.0002, False, 0x12, ss, seq_c, OS_OPTS, 0),
        (0.0003, True, 0x10, seq_c, seq_s, b"", 0),
        (0.0004, True, 0x18, seq_c, seq_s, b"", 200),
        (0.0006, False, 0x10, seq_s, seq_c + np.uint64(200), b"", 0),
        (0.0020, False, 0x18, seq_s, seq_c + np.uint64(200), b"", 512),
        (0.0021, True, 0x10, seq_c + np.uint64(200), seq_s + np.uint64(512), b"", 0),
        (0.0030, True, 0x11, seq_c + np.uint64(200), seq_s + np.uint64(512), b"", 0),
        (0.0032, False, 0x11, seq_s + np.uint64(512), seq_c + np.uint64(201), b"", 0),
        (0.0033, True, 0x10, seq_c + np.uint64(201), seq_s + np.uint64(513), b"", 0),
    ]
    for dt_, from_client, flags, seq, ack, opts, pay in steps:
        s, d = (client, server) if from_client else (server, client)
        sp, dp = (sport, port) if from_client else (port, sport)
        seq = np.asarray(seq, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
        ack = np.asarray(ack, dtype=np.uint64) & np.uint64(0xFFFFFFFF)
        rows = tcp_rows(n_conn, s, d, sp, dp, flags, seq=seq, ack=ack, opts=opts, payload=pay,
                        ipid=rng.integers(0, 65536, n_conn))  # fmt: skip
        blocks.append((tc + dt_, rows))
    return _assemble(blocks)


def _assemble(blocks: list[tuple[Any, Any]]) -> bytes:
    ts = np.concatenate([b[0] for b in blocks])
    lens = np.concatenate([np.full(b[1].shape[0], b[1].shape[1]) for b in blocks])
    order = np.argsort(ts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.shape[0])
    rec_len = lens[order] + 16
    start = np.concatenate([[0], np.cumsum(rec_len)[:-1]]) + 24
    out = np.zeros(24 + int(rec_len.sum()), dtype=np.uint8)
    out[:24] = np.frombuffer(cap.pcap_header(), dtype=np.uint8)
    base = 0
    for t, rows in blocks:
        n, width = rows.shape
        pos = start[rank[base : base + n]]
        sec = np.floor(t).astype(np.uint64)
        usec = np.round((t - np.floor(t)) * 1e6).astype(np.uint64)
        hdr = np.stack(
            [sec, usec, np.full(n, width, np.uint64), np.full(n, width, np.uint64)], axis=1
        )
        hdr_bytes = hdr.astype("<u4").view(np.uint8).reshape(n, 16)
        out[pos[:, None] + np.arange(16)] = hdr_bytes
        out[pos[:, None] + 16 + np.arange(width)] = rows
        base += n
    return out.tobytes()


def _time(argv: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, timeout=600)
    return time.perf_counter() - t


def stages(path: Path) -> dict[str, float]:
    """Seconds per library stage, once."""
    from twinscan.detect import contacts as ct
    from twinscan.detect import fields, runner

    out: dict[str, float] = {}
    t = time.perf_counter()
    data = path.read_bytes()
    fr = cap.read_capture(data)
    out["read"] = time.perf_counter() - t
    t = time.perf_counter()
    pk = fields.extract(fr)
    out["fields"] = time.perf_counter() - t
    t = time.perf_counter()
    con = ct.contacts(pk)
    out["contacts"] = time.perf_counter() - t
    t = time.perf_counter()
    alerts = runner.run_detectors(runner.events(con), list(runner.DETECTORS))
    out["detectors"] = time.perf_counter() - t
    out["alerts"] = len(alerts)
    out["packets"] = len(fr)
    out["contacts_n"] = len(con)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--out", type=Path, default=Path("/tmp/twinscan-detect-1m.pcap"))
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--results", type=Path, default=RESULTS)
    ap.add_argument(
        "--render-only", action="store_true", help="no run: the .md and the README from the CSV"
    )
    args = ap.parse_args()
    if args.render_only:
        render(args.results)
        return
    if not args.out.exists():
        args.out.write_bytes(generate(args.packets))
    twinscan = str(Path(sys.executable).with_name("twinscan"))
    tcpdump = shutil.which("tcpdump")
    st = stages(args.out)
    print({k: round(v, 3) for k, v in st.items()})
    times: dict[str, list[float]] = {"twinscan detect": [], "tcpdump -r -w /dev/null": []}
    for _ in range(args.repeat):
        times["twinscan detect"].append(_time([twinscan, "detect", str(args.out)]))
        if tcpdump:
            times["tcpdump -r -w /dev/null"].append(
                _time([tcpdump, "-r", str(args.out), "-w", "/dev/null"])
            )
    new = not args.results.exists()
    with args.results.open("a", newline="") as fh:
        w = csv.writer(fh)
        if new:
            w.writerow(
                ["date", "tool", "packets", "bytes", "median_s", "min_s", "runs", "cpu", "command"]
            )
        for tool, ts in times.items():
            if not ts:
                continue
            cmd = (
                f"{tool.split()[0]} {'detect ' if tool.startswith('twinscan') else '-r '}{args.out}"
            )
            if tool.startswith("tcpdump"):
                cmd += " -w /dev/null"
            w.writerow([dt.date.today().isoformat(), tool, int(st["packets"]), args.out.stat().st_size,
                        f"{statistics.median(ts):.3f}", f"{min(ts):.3f}", len(ts),
                        f"{platform.processor() or platform.machine()} x{os.cpu_count()}", cmd])  # fmt: skip
            print(f"{tool}: median {statistics.median(ts):.3f} s over {len(ts)} runs")
    render(args.results)


def render(results: Path) -> None:
    """RESULTS.md from RESULTS (a CSV), and the README's block when it is the recorded one."""
    from twinscan.bench.results_md import publish

    readme = REPO / "README.md" if results.resolve() == RESULTS.resolve() else None
    print(f"wrote {publish('detect_speed', results, readme)}")


if __name__ == "__main__":
    main()
