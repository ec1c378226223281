"""The on-disk template cache gives exactly what scapy builds, and recovers from a bad cache."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.vocab import Technique
from twinscan.engines import template_cache
from twinscan.engines.template_cache import build_template
from twinscan.protocol.packets import PROBE_FLAGS
from twinscan.protocol.udp_payloads import load_payloads

TECHNIQUES = sorted(PROBE_FLAGS, key=str) + [Technique.UDP]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    return tmp_path / "twinscan" / "templates"


@pytest.mark.parametrize("tech", TECHNIQUES)
def test_cached_equals_fresh_scapy_build(cache: Path, tech: Technique) -> None:
    first = template_cache.cached_template(tech, "127.0.0.1", 40123)  # miss: scapy builds it
    assert list(cache.rglob("*.bin")), "the miss was written to the cache"
    second = template_cache.cached_template(tech, "127.0.0.1", 40123)  # hit
    assert first == second == build_template(tech, "127.0.0.1", 40123)


@settings(max_examples=80, deadline=None)
@given(
    tech=st.sampled_from(TECHNIQUES),
    src=st.ip_addresses(v=4).map(str),
    sport=st.integers(0, 65535),
    payload=st.binary(max_size=48),
)
def test_patched_source_equals_scapy(tech: Technique, src: str, sport: int, payload: bytes) -> None:
    payload = payload if tech is Technique.UDP else b""
    generic = build_template(tech, "0.0.0.0", 0, payload)
    assert template_cache.with_source(generic, src, sport) == build_template(
        tech, src, sport, payload
    )


def test_udp_payload_templates_are_cached_per_payload(cache: Path) -> None:
    payloads = load_payloads()
    for port in (53, 123, 161):
        for payload in payloads(port):
            got = template_cache.cached_template(Technique.UDP, "198.18.0.1", 5000, payload)
            assert got == build_template(Technique.UDP, "198.18.0.1", 5000, payload)
    assert len(list(cache.rglob("udp-*.bin"))) >= 3


def test_corrupt_entry_is_rebuilt(cache: Path) -> None:
    good = template_cache.cached_template(Technique.SYN, "127.0.0.1", 1)
    (entry,) = cache.rglob("syn-*.bin")
    entry.write_bytes(b"\x45garbage")
    assert template_cache.cached_template(Technique.SYN, "127.0.0.1", 1) == good
    assert entry.read_bytes() == build_template(Technique.SYN, "0.0.0.0", 0)


def test_unwritable_cache_still_builds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    monkeypatch.setenv("XDG_CACHE_HOME", str(blocker))
    got = template_cache.cached_template(Technique.FIN, "127.0.0.1", 2)
    assert got == build_template(Technique.FIN, "127.0.0.1", 2)


def test_warm_cache_scan_setup_does_not_import_scapy(cache: Path) -> None:
    template_cache.cached_template(Technique.SYN, "127.0.0.1", 1)  # warm
    code = (
        "import sys; from twinscan.engines import template_cache as c; from twinscan.core.vocab import Technique;"
        "c.cached_template(Technique.SYN, '127.0.0.1', 9); print('scapy' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


def test_cache_is_keyed_by_scapy_version(cache: Path) -> None:
    template_cache.cached_template(Technique.ACK, "127.0.0.1", 1)
    (entry,) = cache.rglob("ack-*.bin")
    assert entry.parent.name == f"scapy-{template_cache.scapy_version()}"
    import scapy

    assert template_cache.scapy_version() == scapy.VERSION
