#!/usr/bin/env python3
"""Regenerate fixtures/captures/*.pcap: real scans and ordinary traffic for `twinscan detect`.

Run as root from the repository root (needs ip, tcpdump, nmap, masscan and the venv):

    .venv/bin/python scripts/make_detect_captures.py            # every capture
    .venv/bin/python scripts/make_detect_captures.py nmap-syn   # just some

nmap and masscan run in a topology created here and removed at the end (nothing else is
touched): two network namespaces joined by one veth pair, all addresses inside them.

    tsdc-s (scanner side)                         tsdc-t (target)
    tsdc1: 198.18.99.2 scanner, 198.18.99.3 client  <-->  tsdc0: 198.18.99.1
           198.18.99.4 masscan's own (raw, no stack)

The target runs an HTTP server on 8080 and UDP responders on 53 (DNS) and 161 (SNMP); ICMP
rate limiting is off so UDP scans finish quickly. tcpdump captures on tsdc0 (Ethernet)
while a scanner runs from 198.18.99.2 and, at the same time, an ordinary client on
198.18.99.3 fetches pages, sends DNS and SNMP queries and retries a refused connection.

twinscan refuses 198.18.0.0/16 outside its own lab, so its captures are made in a twinscan
lab (`twinscan lab up --prefix tsdl`, the default spec): twinscan scans host plain
(198.18.0.10) from the scanner namespace (198.18.0.1), tcpdump listens in plain's namespace,
and the ordinary client runs on host acl (198.18.0.11): HTTP to plain:80, DNS to 53, NTP to
123, and the refused connection to 9999.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "fixtures" / "captures"
NS_T, NS_S = "tsdc-t", "tsdc-s"
TARGET, SCANNER, CLIENT, MASSCAN_IP = "198.18.99.1", "198.18.99.2", "198.18.99.3", "198.18.99.4"
PORTS = "1-120,8080"
UDP_PORTS = "40-80,161"
TWINSCAN = str(REPO / ".venv" / "bin" / "twinscan")
NMAP = ["nmap", "-n", "-Pn", "-T4", "--max-retries", "1"]

# name -> scanner argv (run in NS_S)
CASES: dict[str, list[str]] = {}
for letter, tech in [("S", "syn"), ("T", "connect"), ("F", "fin"), ("X", "xmas"), ("N", "null"),
                     ("A", "ack"), ("M", "maimon")]:  # fmt: skip
    CASES[f"nmap-{tech}"] = [*NMAP, f"-s{letter}", "-p", PORTS, TARGET]
    CASES[f"twinscan-{tech}"] = [TWINSCAN, "scan", f"-s{letter}", "-p", PORTS, TARGET]
CASES["nmap-udp"] = [*NMAP, "-sU", "-p", UDP_PORTS, TARGET]
CASES["twinscan-udp"] = [TWINSCAN, "scan", "-sU", "-p", UDP_PORTS, TARGET]
LAB = "tsdl"
LAB_TARGET, LAB_CLIENT = "198.18.0.10", "198.18.0.11"
CASES["masscan-syn"] = ["masscan", TARGET, f"-p{PORTS}", "--rate", "500", "--wait", "2"]
CASES["ordinary"] = []  # the ordinary client alone


def sh(*argv: str, ns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = (["ip", "netns", "exec", ns] if ns else []) + list(argv)
    return subprocess.run(cmd, check=check, capture_output=True, text=True, timeout=120)


def mac(ns: str, dev: str) -> str:
    out = sh("ip", "-j", "link", "show", "dev", dev, ns=ns).stdout
    return str(json.loads(out)[0]["address"])


def up() -> None:
    down()
    sh("ip", "netns", "add", NS_T)
    sh("ip", "netns", "add", NS_S)
    sh("ip", "link", "add", "tsdc0", "netns", NS_T, "type", "veth", "peer", "name", "tsdc1",
       "netns", NS_S)  # fmt: skip
    for ns in (NS_T, NS_S):
        sh(
            "sysctl",
            "-qw",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            ns=ns,
        )
        sh("ip", "link", "set", "lo", "up", ns=ns)
    sh("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0", ns=NS_T)
    sh("ip", "addr", "add", f"{TARGET}/24", "dev", "tsdc0", ns=NS_T)
    sh("ip", "addr", "add", f"{SCANNER}/24", "dev", "tsdc1", ns=NS_S)
    sh("ip", "addr", "add", f"{CLIENT}/24", "dev", "tsdc1", ns=NS_S)
    sh("ip", "link", "set", "tsdc0", "up", ns=NS_T)
    sh("ip", "link", "set", "tsdc1", "up", ns=NS_S)


def down() -> None:
    for ns in (NS_T, NS_S):
        sh("ip", "netns", "del", ns, check=False)


# --- the target's services and the ordinary client (run inside the namespaces) --------------


def serve() -> None:
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer((TARGET, 8080), Quiet)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    socks = []
    for port in (53, 161):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((TARGET, port))
        socks.append(s)
    import select

    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline:
        ready, _, _ = select.select(socks, [], [], 1.0)
        for s in ready:
            data, peer = s.recvfrom(2048)
            s.sendto(data[:2] + b"\x81\x80" + data[4:] if s.getsockname()[1] == 53 else data, peer)


def dns_query(name: str) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


SNMP_GET = bytes.fromhex(
    "302602010104067075626c6963a019020400000001020100020100300b300906052b060102010500"
)


NTP_QUERY = b"\x1b" + b"\0" * 47


def client(target: str, me: str, tcp_port: int, udp: list[tuple[int, bytes]], rounds: int) -> None:
    """Ordinary traffic from ``me``: a page, UDP queries, one refused connection retried."""
    for r in range(rounds):
        c = socket.create_connection((target, tcp_port), timeout=3, source_address=(me, 0))
        c.sendall(b"GET / HTTP/1.0\r\nHost: t\r\n\r\n")
        try:
            while c.recv(4096):
                pass
        except TimeoutError:
            pass
        c.close()
        for port, payload in udp:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind((me, 0))
            u.settimeout(2)
            u.sendto(payload, (target, port))
            try:
                u.recvfrom(2048)
            except TimeoutError:
                pass
            u.close()
        if r == 0:  # a client retrying a refused connection
            for _ in range(3):
                c = socket.socket()
                c.bind((me, 0))
                try:
                    c.connect((target, 9999))
                except ConnectionRefusedError:
                    pass
                c.close()
                time.sleep(0.2)
        time.sleep(0.4)


# --- driver -----------------------------------------------------------------------------------


def capture(name: str, argv: list[str], *, lab: bool = False) -> None:
    out = OUT / f"{name}.pcap"
    out.unlink(missing_ok=True)
    if lab:
        cap_ns, dev = f"{LAB}-h-plain", _lab_dev()
        client_ns, client_args = f"{LAB}-h-acl", ["lab"]
        scan_ns = f"{LAB}-scan"
        argv = [a.replace(TARGET, LAB_TARGET) for a in argv]
    else:
        cap_ns, dev, client_ns, client_args, scan_ns = NS_T, "tsdc0", NS_S, ["own"], NS_S
    dump = subprocess.Popen(
        ["ip", "netns", "exec", cap_ns, "tcpdump", "-i", dev, "-s", "128", "-U", "-n",
         "-Z", "root", "-w", str(out), "ip"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        time.sleep(1.5)
        cl = subprocess.Popen(
            ["ip", "netns", "exec", client_ns, sys.executable, __file__, "--client", *client_args]
        )
        if argv:
            if argv[0] == "masscan":
                argv = [*argv, "--adapter", "tsdc1", "--adapter-ip", MASSCAN_IP,
                        "--adapter-mac", mac(NS_S, "tsdc1"), "--router-mac", mac(NS_T, "tsdc0")]  # fmt: skip
            proc = subprocess.Popen(["ip", "netns", "exec", scan_ns, *argv],
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
            try:
                _out, err = proc.communicate(timeout=60 if argv[0] != "masscan" else 15)
            except subprocess.TimeoutExpired:  # masscan may not exit after --wait
                proc.kill()
                _out, err = proc.communicate(timeout=10)
            print(
                f"{name}: exit {proc.returncode} {err.strip()[-200:] if proc.returncode else ''}",
                file=sys.stderr,
            )
        cl.wait(timeout=60)
        time.sleep(1.0)
    finally:
        dump.send_signal(signal.SIGINT)
        dump.wait(timeout=10)


def _lab_dev() -> str:
    out = sh("ip", "-j", "link", "show", ns=f"{LAB}-h-plain").stdout
    return next(str(d["ifname"]) for d in json.loads(out) if d["ifname"] != "lo")


def main(names: list[str]) -> None:
    if os.geteuid() != 0:
        sys.exit("run as root")
    chosen = {n: CASES[n] for n in (names or CASES)}
    own = {n: a for n, a in chosen.items() if not n.startswith("twinscan-")}
    in_lab = {n: a for n, a in chosen.items() if n.startswith("twinscan-")}
    if own:
        up()
        services = subprocess.Popen(
            ["ip", "netns", "exec", NS_T, sys.executable, __file__, "--serve"]
        )
        try:
            time.sleep(1.0)
            for name, argv in own.items():
                capture(name, argv)
        finally:
            services.terminate()
            services.wait(timeout=10)
            down()
    if in_lab:
        subprocess.run([TWINSCAN, "lab", "up", "--prefix", LAB], check=True, timeout=300)
        try:
            for name, argv in in_lab.items():
                capture(name, argv, lab=True)
        finally:
            subprocess.run([TWINSCAN, "lab", "down", "--prefix", LAB], check=False, timeout=300)


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve()
    elif sys.argv[1:3] == ["--client", "own"]:
        client(TARGET, CLIENT, 8080, [(53, dns_query("example.org")), (161, SNMP_GET)], 6)
    elif sys.argv[1:3] == ["--client", "lab"]:
        client(LAB_TARGET, LAB_CLIENT, 80, [(53, dns_query("example.org")), (123, NTP_QUERY)], 6)
    else:
        main(sys.argv[1:])
