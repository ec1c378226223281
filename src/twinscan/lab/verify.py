"""Check the truth table against a scanner's verdicts (used by the lab tests and the report).

``nmap_argv`` builds the nmap command for one technique over a spec's port universe (pure);
``compare`` lines a scan frame up against the truth, cell by cell, and ``known_nmap_error``
says which disagreements are documented nmap errors rather than truth-table bugs.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING

from twinscan.core.rules import NO_RESPONSE
from twinscan.core.vocab import PortState, Reason, Technique
from twinscan.lab.spec import LabSpec
from twinscan.request.ports import format_port_list

if TYPE_CHECKING:
    import pandas as pd

T = Technique


def nmap_argv(
    spec: LabSpec, technique: Technique, *, timing: str = "-T4", xml_out: str = "-"
) -> list[str]:
    """``nmap`` with -n -Pn over every host and the spec's port universe for ``technique``."""
    if technique is T.FTP_BOUNCE:
        relay = spec.scan.bounce_relay
        if relay is None:
            raise ValueError("the spec has no bounce_relay")
        host = spec.host(relay)
        ports = format_port_list(spec.scan.bounce_ports)
        targets = [spec.host(n).address for n in spec.scan.bounce_targets]
        return ["nmap", "-b", f"anonymous:lab@{host.address}:{host.ftp}", timing, "-n", "-Pn",
                "-p", ports, "-oX", xml_out, *targets]  # fmt: skip
    ports = format_port_list(spec.udp_universe() if technique is T.UDP else spec.tcp_universe())
    targets = [h.address for h in spec.hosts]
    return ["nmap", f"-s{technique.letter}", timing, "-n", "-Pn", "-p", ports,
            "-oX", xml_out, *targets]  # fmt: skip


@dataclasses.dataclass(frozen=True, slots=True)
class Mismatch:
    technique: Technique
    host: str
    port: int
    truth: tuple[PortState, Reason]
    got: tuple[PortState, Reason] | None
    known: str | None  # the documented nmap error that explains it, or None

    def __str__(self) -> str:
        got = f"{self.got[0].value}/{self.got[1].value}" if self.got else "missing"
        tag = f" [known: {self.known}]" if self.known else ""
        return (
            f"{self.technique.value} {self.host}:{self.port} truth "
            f"{self.truth[0].value}/{self.truth[1].value} got {got}{tag}"
        )


#: Known nmap errors on the default lab: (host name, techniques, why). See ``known_nmap_error``.
KNOWN_NMAP_ERRORS: dict[str, str] = {
    "icmp-ratelimit": (
        "UDP on a host with Linux's default ICMP rate limit: the kernel suppresses most "
        "port-unreachables and nmap -T4 gives up waiting, so closed ports read open|filtered"
    ),
    "loss": (
        "a host with random inbound loss: every retransmission of a probe was lost, so nmap "
        "reports the no-response verdict"
    ),
}


def known_nmap_error(
    spec: LabSpec,
    technique: Technique,
    address: str,
    truth: tuple[PortState, Reason],
    got: tuple[PortState, Reason] | None,
) -> str | None:
    """Which documented nmap error explains ``got`` differing from ``truth`` (None: unexplained)."""
    host = next((h for h in spec.hosts if h.address == address), None)
    if host is None or got is None:
        return None
    silence = (NO_RESPONSE[technique], Reason.NO_RESPONSE)
    if (
        technique is T.UDP
        and host.icmp_ratelimit
        and truth == (PortState.CLOSED, Reason.PORT_UNREACH)
        and got == silence
    ):
        return "icmp-ratelimit"
    if host.loss > 0 and got == silence:
        return "loss"
    return None


def compare(spec: LabSpec, truth: pd.DataFrame, scan: pd.DataFrame) -> list[Mismatch]:
    """Every truth cell the scan disagrees with (or lacks), for the techniques the scan ran."""
    techniques = set(scan["technique"].astype(str))
    got = {(t, h, p): v for t, h, p, v in _cells(scan)}
    out: list[Mismatch] = []
    for tech, host, port, want in _cells(truth):
        if tech not in techniques:
            continue
        have = got.get((tech, host, port))
        if have == want:
            continue
        technique = Technique(tech)
        known = known_nmap_error(spec, technique, host, want, have)
        out.append(Mismatch(technique, host, port, want, have, known))
    return out


def _cells(frame: pd.DataFrame) -> list[tuple[str, str, int, tuple[PortState, Reason]]]:
    cols = [frame[c].astype(str).tolist() for c in ("technique", "host", "state", "reason")]
    ports = [int(p) for p in frame["port"].tolist()]
    return [
        (t, h, p, (PortState(s), Reason(r))) for t, h, s, r, p in zip(*cols, ports, strict=True)
    ]
