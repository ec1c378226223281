"""Shared pytest fixtures.

``lab`` (session scope): the default ground-truth lab (fixtures/labs/default.toml), brought up
once per test session under a unique prefix ``tsT<4 hex>`` and always torn down. Tests that use
it are marked ``@pytest.mark.lab``; without root or ``ip netns`` it skips with the reason.
"""

from __future__ import annotations

import atexit
import dataclasses
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import pandas as pd

    from twinscan.lab.spec import LabSpec

REPO = Path(__file__).resolve().parents[1]

# A test run started in the background (a script's `make test &`) inherits SIGINT ignored, and
# so would every scan it starts: the tests that stop a scan with SIGINT mean Ctrl-C in a
# terminal, so the run restores the default (exec gives the children SIG_DFL, not SIG_IGN).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)
DEFAULT_LAB_SPEC = REPO / "fixtures" / "labs" / "default.toml"


def lab_unavailable() -> str | None:
    """Why the lab cannot run here (None: it can)."""
    if os.geteuid() != 0:
        return "the lab needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"the lab needs `{tool}`"
    probe = subprocess.run(["ip", "netns", "list"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return "`ip netns` does not work here"
    return None


@dataclasses.dataclass(frozen=True)
class LabHandle:
    """A running lab, as tests see it."""

    prefix: str  # e.g. "tsT1a2b": pass to `twinscan lab ... --prefix` or netns functions
    scanner_ns: str  # the scanner namespace, e.g. "tsT1a2b-scan"
    spec_path: Path
    spec: LabSpec
    hosts: dict[str, str]  # host name -> address, e.g. {"plain": "198.18.0.10", ...}
    truth: pd.DataFrame  # the spec's truth table (results schema, engine "truth")

    def address(self, name: str) -> str:
        return self.hosts[name]

    def run(
        self, argv: list[str], timeout: float = 120.0, *, check: bool = False
    ) -> subprocess.CompletedProcess[str]:
        """Run ``argv`` inside the scanner namespace; output captured as text."""
        return subprocess.run(
            ["ip", "netns", "exec", self.scanner_ns, *argv],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=check,
        )


def _teardown(prefix: str) -> None:
    from twinscan.lab import netns

    netns.down(prefix)


@pytest.fixture(scope="session")
def lab() -> Iterator[LabHandle]:
    reason = lab_unavailable()
    if reason is not None:
        pytest.skip(reason)
    from twinscan.lab import load_spec, netns
    from twinscan.lab.truth import truth_frame

    prefix = "tsT" + secrets.token_hex(2)
    spec = load_spec(DEFAULT_LAB_SPEC)
    atexit.register(_teardown, prefix)  # also on a hard exit of the session
    try:
        state = netns.up(spec, prefix)
        yield LabHandle(
            prefix=prefix,
            scanner_ns=str(state["scanner_ns"]),
            spec_path=DEFAULT_LAB_SPEC,
            spec=spec,
            hosts=spec.addresses,
            truth=truth_frame(spec),
        )
    finally:
        _teardown(prefix)
        atexit.unregister(_teardown)


@pytest.fixture(autouse=True)
def _no_stop_left_requested() -> Iterator[None]:
    """A test that stops an in-process scan with a signal leaves ``interrupt.requested()`` set
    (it stays set until the next scan clears it). Calls below the scan entry points, such as
    ``run_forked`` on its own, would read it as a stop: each test starts without one."""
    from twinscan.engines import interrupt

    interrupt.clear()
    yield
