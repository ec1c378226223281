"""The running default lab has the properties its spec promises (isolation, sysctls, services)."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.lab

DNS_PROBE = """
import socket, struct, sys
q = struct.pack("!HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + b"\\x03lab\\x00" + struct.pack("!HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (sys.argv[1], 53))
r, _ = s.recvfrom(512)
print(r[:2].hex(), len(r))
"""

CONNECT_PROBE = """
import socket, sys, time
s = socket.socket(); s.settimeout(1.5); t = time.monotonic()
try:
    s.connect((sys.argv[1], 22)); print("connected")
except OSError as exc:
    print(type(exc).__name__, round(time.monotonic() - t, 1))
"""


def test_scanner_namespace_has_no_default_route(lab) -> None:  # type: ignore[no-untyped-def]
    routes = lab.run(["ip", "-j", "route", "show", "table", "all"], check=True).stdout
    assert not [r for r in json.loads(routes) if r.get("dst") == "default"]
    probe = lab.run(["ip", "route", "get", "192.0.2.1"])
    assert probe.returncode != 0 and "unreachable" in probe.stderr


def test_icmp_rate_limit_only_on_the_rate_limited_host(lab) -> None:  # type: ignore[no-untyped-def]
    import subprocess

    def sysctl(host: str) -> str:
        ns = f"{lab.prefix}-h-{host}"
        argv = ["ip", "netns", "exec", ns, "sysctl", "-n", "net.ipv4.icmp_ratelimit"]
        return subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()

    assert sysctl("rl") == "1000"
    assert sysctl("plain") == "0" and sysctl("acl") == "0"


def test_dns_service_answers_with_the_query_id(lab) -> None:  # type: ignore[no-untyped-def]
    import sys

    out = lab.run([sys.executable, "-c", DNS_PROBE, lab.address("plain")], check=True, timeout=20)
    assert out.stdout.split()[0] == "1234"


def test_silent_address_times_out_without_hanging(lab) -> None:  # type: ignore[no-untyped-def]
    import sys

    out = lab.run([sys.executable, "-c", CONNECT_PROBE, lab.address("dark")], timeout=20)
    assert out.stdout.split()[0] in ("TimeoutError", "timeout"), out
    ok = lab.run([sys.executable, "-c", CONNECT_PROBE, lab.address("plain")], timeout=20)
    assert ok.stdout.strip() == "connected"
