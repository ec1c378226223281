"""compare -6 and the exports over IPv6 on ::1 (issue #17): twinscan against nmap -6."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinscan.core.errors import TargetError
from twinscan.core.vocab import Technique
from twinscan.engines.nmap_engine import nmap_arguments
from twinscan.formats.nmap_xml_read import read_nmap_xml_file
from twinscan.request.model import ScanRequest
from twinscan.request.ports import PortPlan

TWINSCAN = [sys.executable, "-m", "twinscan"]
needs_nmap_root = pytest.mark.skipif(
    shutil.which("nmap") is None or os.geteuid() != 0, reason="needs nmap and root"
)


def _request(*targets: str) -> ScanRequest:
    return ScanRequest(
        targets=targets, ports=PortPlan(tcp=(22,), udp=()), techniques=(Technique.SYN,)
    )


def test_nmap_gets_dash_6_for_ipv6_targets() -> None:
    assert "-6" in nmap_arguments(_request("::1"), Technique.SYN)
    assert "-6" not in nmap_arguments(_request("127.0.0.1"), Technique.SYN)
    with pytest.raises(TargetError, match="-6"):
        nmap_arguments(_request("127.0.0.1", "::1"), Technique.SYN)


@pytest.fixture(scope="module")
def v6_listeners() -> Iterator[tuple[int, int]]:
    tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
    tcp.bind(("::1", 0))
    tcp.listen(8)
    udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    udp.bind(("::1", 0))
    yield tcp.getsockname()[1], udp.getsockname()[1]
    tcp.close()
    udp.close()


@needs_nmap_root
@pytest.mark.parametrize("tech", ["-sS", "-sF", "-sA", "-sU"])
def test_compare_6_agrees_with_nmap_on_loopback(
    tech: str, v6_listeners: tuple[int, int], tmp_path: Path
) -> None:
    tcp, udp = v6_listeners
    ports = f"1-40,{tcp}" if tech != "-sU" else f"1-5,{udp}"
    out = tmp_path / "cmp.csv"
    proc = subprocess.run(
        [*TWINSCAN, "compare", "-6", tech, "-p", ports, "::1", "--csv", str(out)]
        + ["--xml-dir", str(tmp_path), "--html", str(tmp_path / "r.html")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert "every verdict agrees" in proc.stdout
    assert "::1" in out.read_text() and "::1" in (tmp_path / "r.html").read_text()
    for side in ("nmap", "native"):
        xml = next(tmp_path.glob(f"{side}-*.xml"))
        assert 'addrtype="ipv6"' in xml.read_text()
        frame = read_nmap_xml_file(str(xml)).frame  # import-nmap reads IPv6 XML
        assert set(frame["host"].astype(str)) == {"::1"}


@needs_nmap_root
def test_scan_exports_carry_ipv6_hosts(v6_listeners: tuple[int, int], tmp_path: Path) -> None:
    tcp, _ = v6_listeners
    base = tmp_path / "s"
    proc = subprocess.run(
        [*TWINSCAN, "scan", "-6", "-sS", "-p", f"1-10,{tcp}", "::1", "--csv", str(base) + ".csv"]
        + ["--json", str(base) + ".jsonl", "-oX", str(base) + ".xml"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    rows = [json.loads(line) for line in (tmp_path / "s.jsonl").read_text().splitlines()]
    assert {r["host"] for r in rows if "host" in r} == {"::1"}
    assert 'addrtype="ipv6"' in (tmp_path / "s.xml").read_text()
    imported = subprocess.run(
        [*TWINSCAN, "import-nmap", str(base) + ".xml", "--csv", "-"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imported.returncode == 0, imported.stderr
    assert f"::1,tcp,{tcp},open" in imported.stdout
