"""The nmap engine: argv built from the request (pure), error mapping, and real runs on loopback."""

from __future__ import annotations

import os
import shutil
import socket
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.errors import EnvironmentProblem, ScanFailed, TargetError
from twinscan.core.timing import resolve
from twinscan.core.vocab import Engine, Technique
from twinscan.engines import nmap_engine
from twinscan.engines.nmap_engine import nmap_arguments, nmap_command, run_nmap
from twinscan.request.model import BounceRelay, ScanRequest
from twinscan.request.ports import PortPlan

needs_nmap = pytest.mark.skipif(shutil.which("nmap") is None, reason="nmap not installed")
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="raw nmap scans need root")


def request(**kw: object) -> ScanRequest:
    base: dict[str, object] = {
        "targets": ("127.0.0.1",),
        "ports": PortPlan(tcp=(22, 80, 81, 82, 83), udp=(53, 161)),
        "techniques": (Technique.SYN,),
    }
    base.update(kw)
    return ScanRequest(**base)  # type: ignore[arg-type]


def test_default_arguments() -> None:
    assert nmap_arguments(request(), Technique.SYN) == [
        "-n", "-Pn", "--reason", "-sS", "-T3", "-p", "T:22,80-83",
    ]  # fmt: skip


def test_udp_options_and_port_list() -> None:
    req = request(
        timing=resolve(4, max_retries=1, min_rate=100, max_rate=500.5, scan_delay_ms=20),
        randomize_ports=False,
        defeat_icmp_ratelimit=True,
    )
    assert nmap_arguments(req, Technique.UDP) == [
        "-n", "-Pn", "--reason", "-sU", "-T4",
        "--max-retries", "1", "--min-rate", "100", "--max-rate", "500.5",
        "--scan-delay", "20ms", "--defeat-icmp-ratelimit", "-r", "-p", "U:53,161",
    ]  # fmt: skip


def test_template_values_are_not_repeated_as_options() -> None:
    args = nmap_arguments(request(timing=resolve(4, max_retries=6)), Technique.FIN)
    assert "--max-retries" not in args  # 6 is already T4's value
    assert "-sF" in args and "-T4" in args


def test_bounce_uses_the_relay_and_no_scan_letter() -> None:
    relay = BounceRelay("198.18.0.14", 2121, "anonymous", "x@y")
    args = nmap_arguments(request(bounce=relay), Technique.FTP_BOUNCE)
    assert args[3:5] == ["-b", "anonymous:x@y@198.18.0.14:2121"]
    assert not any(a.startswith("-s") for a in args)


def test_command_puts_targets_after_xml_to_stdout() -> None:
    cmd = nmap_command(request(targets=("127.0.0.1", "127.0.0.2")), Technique.CONNECT, "nmap")
    assert cmd[:5] == ["nmap", "-oX", "-", "127.0.0.1", "127.0.0.2"]
    assert "-sT" in cmd and "-6" not in cmd
    cmd = nmap_command(request(targets=("::1",)), Technique.CONNECT, "/usr/bin/nmap")
    assert cmd[:4] == ["/usr/bin/nmap", "-oX", "-", "::1"] and "-6" in cmd  # one family a run


@pytest.mark.parametrize("target", ["-iL/etc/passwd", "127.0.0.1 --script=x", "localhost", ""])
def test_targets_must_be_addresses(target: str) -> None:
    with pytest.raises(TargetError):
        nmap_command(request(targets=(target,)), Technique.SYN)


FORBIDDEN_PREFIXES = ("-i", "-o", "--script", "--datadir", "--resume", "--excludefile", "-e")


@settings(max_examples=100, deadline=None)
@given(
    technique=st.sampled_from([t for t in Technique if t is not Technique.FTP_BOUNCE]),
    tcp=st.lists(st.integers(1, 65535), min_size=1, max_size=20),
    udp=st.lists(st.integers(1, 65535), min_size=1, max_size=20),
    level=st.integers(0, 5),
    retries=st.none() | st.integers(0, 20),
    rate=st.none() | st.floats(1, 1e6),
    randomize=st.booleans(),
)
def test_argv_never_carries_targets_or_output_options(
    technique: Technique,
    tcp: list[int],
    udp: list[int],
    level: int,
    retries: int | None,
    rate: float | None,
    randomize: bool,
) -> None:
    req = request(
        ports=PortPlan(tuple(sorted(set(tcp))), tuple(sorted(set(udp)))),
        timing=resolve(level, max_retries=retries, max_rate=rate),
        randomize_ports=randomize,
    )
    args = nmap_arguments(req, technique)
    assert not any(a.startswith(FORBIDDEN_PREFIXES) for a in args)
    assert "127.0.0.1" not in args
    ports = args[args.index("-p") + 1]
    from twinscan.request.ports import parse_port_list

    assert parse_port_list(ports[2:]) == list(req.ports_for(technique))
    assert ("-r" in args) is (not randomize)


def test_missing_nmap_names_the_install_step(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nmap_engine.shutil, "which", lambda name: None)
    with pytest.raises(EnvironmentProblem, match="make setup"):
        run_nmap(request(), Technique.SYN)


class _FailingScanner:
    error: Exception

    def __init__(self, nmap_search_path: tuple[str, ...] = ()) -> None:
        pass

    def scan(self, **kw: object) -> None:
        raise self.error


@pytest.fixture
def fake_scanner(monkeypatch: pytest.MonkeyPatch) -> Iterator[type[_FailingScanner]]:
    import nmap

    monkeypatch.setattr(nmap_engine.shutil, "which", lambda name: "/usr/bin/nmap")
    monkeypatch.setattr(nmap, "PortScanner", _FailingScanner)
    yield _FailingScanner


def test_port_scanner_error_becomes_scan_failed(fake_scanner: type[_FailingScanner]) -> None:
    import nmap

    fake_scanner.error = nmap.PortScannerError(
        "You requested a scan type which requires root privileges.\nQUITTING!\n"
    )
    with pytest.raises(ScanFailed, match="^nmap failed: You requested a scan type"):
        run_nmap(request(), Technique.SYN)


def test_timeout_becomes_scan_failed(fake_scanner: type[_FailingScanner]) -> None:
    import nmap

    fake_scanner.error = nmap.PortScannerTimeout("Timeout from nmap process")
    with pytest.raises(ScanFailed, match="did not finish within"):
        run_nmap(request(), Technique.SYN)


# --- real nmap on loopback -------------------------------------------------------------------


@pytest.fixture
def listener() -> Iterator[tuple[int, int]]:
    """(open port, closed port) on 127.0.0.1."""
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(8)
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    closed = probe.getsockname()[1]
    probe.close()
    try:
        yield srv.getsockname()[1], closed
    finally:
        srv.close()


def _states(frame: object) -> dict[int, str]:
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    return dict(zip(frame["port"].astype(int), frame["state"].astype(str), strict=True))


@pytest.mark.nmap
@needs_nmap
def test_connect_scan_on_loopback(listener: tuple[int, int]) -> None:
    open_port, closed_port = listener
    req = request(ports=PortPlan((open_port, closed_port), ()), timing=resolve(4))
    run = run_nmap(req, Technique.CONNECT)
    assert _states(run.result.frame) == {open_port: "open", closed_port: "closed"}
    assert set(run.result.frame["engine"].astype(str)) == {Engine.NMAP.value}
    assert run.result.meta.arguments.split()[:4] == [shutil.which("nmap"), "-oX", "-", "127.0.0.1"]
    assert "-sT" in run.command
    assert run.xml.lstrip().startswith(b"<?xml")


@pytest.mark.nmap
@needs_nmap
@needs_root
def test_syn_and_udp_scans_on_loopback(listener: tuple[int, int]) -> None:
    open_port, closed_port = listener
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    try:
        udp_port = udp.getsockname()[1]
        req = request(
            ports=PortPlan((open_port, closed_port), (udp_port, closed_port)),
            timing=resolve(4, max_retries=1),
        )
        syn = nmap_engine.scan(req, Technique.SYN)
        assert _states(syn.frame) == {open_port: "open", closed_port: "closed"}
        udp_result = nmap_engine.scan(req, Technique.UDP)
        # A bound socket that never answers is open|filtered; a closed port answers ICMP.
        assert _states(udp_result.frame) == {udp_port: "open|filtered", closed_port: "closed"}
    finally:
        udp.close()
