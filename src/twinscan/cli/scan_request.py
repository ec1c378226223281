"""What a scanning command was asked, before validation: ``ScanOptions``, nmap's scan-type
letters, and the nmap options twinscan does not take.

Free of typer, so that ``twinscan scan`` can run without importing it (``cli.scan_fast``);
``cli.options`` declares the same options for typer and re-exports these names.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twinscan.core.vocab import Technique
    from twinscan.request.model import ScanRequest

#: ``-s all`` expands to these letters (FTP bounce joins when ``-b`` is given).
ALL_LETTERS = "TSFXNAWMU"


@dataclasses.dataclass(frozen=True)
class ScanOptions:
    """What the user asked to scan and how, before validation."""

    targets: list[str]
    scan_types: list[str]
    bounce: str | None = None
    ports: str | None = None
    top_ports: int | None = None
    fast: bool = False
    input_list: str | None = None
    exclude: list[str] = dataclasses.field(default_factory=list)
    timing: str = "3"
    max_retries: int | None = None
    min_rate: float | None = None
    max_rate: float | None = None
    scan_delay: str | None = None
    no_randomize: bool = False
    defeat_icmp_ratelimit: bool = False
    allow_external: bool = False
    ipv6: bool = False
    verbose: int = 0

    def techniques(self, default_letters: str = "") -> tuple[Technique, ...]:
        from twinscan.core.errors import UsageError
        from twinscan.request.build import parse_scan_types

        letters = [c for text in self.scan_types for c in parse_letters(text)]
        for letter in letters:
            if letter in NMAP_ONLY_SCAN_TYPES:
                raise UsageError(f"-s{letter}: {NMAP_ONLY_SCAN_TYPES[letter]}")
        return parse_scan_types(letters or list(default_letters))

    def request(self, *, default_letters: str = "", owners: bool = False) -> ScanRequest:
        """The validated request (targets expanded and checked, ports parsed, timing set)."""
        from twinscan.core.errors import UsageError
        from twinscan.core.timing import parse_level
        from twinscan.request.build import build_request, parse_duration_ms

        if self.fast and (self.ports is not None or self.top_ports is not None):
            raise UsageError("-F scans the top 100 ports: use it without -p or --top-ports")
        techniques = self.techniques(default_letters)
        try:
            level = parse_level(self.timing)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        return build_request(
            targets=self.targets,
            techniques=techniques,
            ports=self.ports,
            top=100 if self.fast else self.top_ports,
            input_list=self.input_list,
            exclude=self.exclude,
            timing_level=level,
            max_retries=self.max_retries,
            min_rate=self.min_rate,
            max_rate=self.max_rate,
            scan_delay_ms=parse_duration_ms(self.scan_delay) if self.scan_delay else None,
            randomize_ports=not self.no_randomize,
            bounce=self.bounce,
            owners=owners,
            allow_external=self.allow_external,
            defeat_icmp_ratelimit=self.defeat_icmp_ratelimit,
            family=6 if self.ipv6 else None,
            argv=("twinscan", *sys.argv[1:]),
        )


#: commands that take nmap's scanning options (see ``twinscan.cli.options``).
SCANNING_COMMANDS = frozenset({"scan", "compare", "audit"})


def scan_options_from(values: Mapping[str, Any]) -> ScanOptions:
    """The ``ScanOptions`` of a command's parsed values: the options nmap users type by habit
    that change nothing (``-Pn``, ``-n``, ``--reason``) dropped, lists never None."""
    names = {f.name for f in dataclasses.fields(ScanOptions)}
    kept = {name: value for name, value in values.items() if name in names}
    for name in ("targets", "scan_types", "exclude"):
        kept[name] = list(kept.get(name) or [])
    return ScanOptions(**kept)


_USE_NMAP = "twinscan reports port states and reasons only; run nmap itself for this"

#: nmap scan types twinscan does not run, with what to do instead.
NMAP_ONLY_SCAN_TYPES: dict[str, str] = {
    "V": "version detection is nmap's: `twinscan audit --versions` asks nmap -sV about the "
    "open ports it reports, or run `nmap -sV -p PORTS HOST` on the open ports twinscan found",
    "C": f"NSE scripts are nmap's: {_USE_NMAP}",
    "n": "host discovery only: twinscan always scans the ports of every target, as nmap -Pn",
    "L": "list scan: `twinscan scan` without a port scan is not offered; nmap -sL lists targets",
    "I": f"the idle (zombie) scan is not implemented; {_USE_NMAP}",
    "O": f"the IP protocol scan is not implemented; {_USE_NMAP}",
    "Y": f"SCTP scans are not implemented; {_USE_NMAP}",
    "Z": f"SCTP scans are not implemented; {_USE_NMAP}",
}

#: nmap options twinscan does not take (matched on the token, or its start for options with an
#: attached value such as -PS22), with what to do instead.
NMAP_ONLY_OPTIONS: dict[str, str] = {
    "-O": f"OS detection is nmap's: {_USE_NMAP}",
    "-A": "-A is nmap's OS and version detection, scripts and traceroute: run nmap -A itself",
    "--script": f"NSE scripts are nmap's: {_USE_NMAP}",
    "--traceroute": f"traceroute is nmap's: {_USE_NMAP}",
    "-PS": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PA": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PU": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PE": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PP": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PM": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PR": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PY": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-PO": "twinscan never pings first (it always acts as nmap -Pn): drop the -P option",
    "-oS": "script kiddie output is not offered; -oN, -oG, -oX, -oA, --csv and --json are",
    "-oM": "machine output is nmap's old name for -oG: use -oG",
    "-D": "decoys are not offered (twinscan scans only what it may answer for)",
    "-S": "spoofed source addresses are not offered",
    "-f": "fragmented probes are not offered",
}


def nmap_only_hint(argv: Sequence[str]) -> str | None:
    """The one-line explanation for the first nmap option in ``argv`` twinscan does not take."""
    for token in argv:
        if token == "--":
            return None
        name = token.split("=", 1)[0]
        if name in NMAP_ONLY_OPTIONS:
            return f"{name}: {NMAP_ONLY_OPTIONS[name]}"
        if len(name) > 3 and name[:3] in NMAP_ONLY_OPTIONS and name[:2] == "-P":
            return f"{name}: {NMAP_ONLY_OPTIONS[name[:3]]}"
    return None


def parse_letters(text: str) -> list[str]:
    """``"SU"`` -> ``["S", "U"]``; ``"all"`` -> every technique but FTP bounce."""
    from twinscan.core.errors import UsageError

    if text.strip().lower() == "all":
        return list(ALL_LETTERS)
    letters = [c for c in text.strip() if c not in ", "]
    if not letters:
        raise UsageError("-s needs scan type letters, e.g. -sS, -sSU or -s all")
    return letters


def describe_request(request: ScanRequest) -> list[str]:
    """``-v``: one line per technique saying what is about to be scanned."""
    hosts = len(request.targets)
    lines = []
    for tech in request.techniques:
        ports = len(request.ports_for(tech))
        lines.append(
            f"Initiating {tech} scan of {hosts} host{'s' if hosts != 1 else ''} "
            f"[{ports} {tech.proto} port{'s' if ports != 1 else ''}/host], "
            f"-T{request.timing.level}, max retries {request.timing.max_retries}"
        )
    return lines


def letters_of(techniques: Sequence[Technique]) -> str:
    return "".join(t.letter for t in techniques)
