"""Turn CLI-level scan options into a validated ``ScanRequest`` (pure apart from DNS)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from twinscan.core.errors import TargetError, UsageError
from twinscan.core.timing import resolve
from twinscan.core.vocab import Proto, Technique
from twinscan.request.model import BounceRelay, ScanRequest
from twinscan.request.ports import PortPlan, default_ports, parse_ports, top_ports
from twinscan.request.safety import check_targets
from twinscan.request.targets import expand_targets, read_target_file


def parse_scan_types(letters: Sequence[str]) -> tuple[Technique, ...]:
    """``["S", "U"]`` -> (SYN, UDP); at most one TCP technique per nmap run is nmap's rule,
    but twinscan runs techniques one after another, so several are allowed."""
    out: list[Technique] = []
    for letter in letters:
        try:
            tech = Technique.from_letter(letter)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        if tech not in out:
            out.append(tech)
    return tuple(out)


def build_request(
    *,
    targets: Sequence[str],
    techniques: Sequence[Technique],
    ports: str | None = None,
    top: int | None = None,
    input_list: str | None = None,
    exclude: Sequence[str] = (),
    timing_level: int = 3,
    max_retries: int | None = None,
    min_rate: float | None = None,
    max_rate: float | None = None,
    scan_delay_ms: float | None = None,
    randomize_ports: bool = True,
    bounce: str | None = None,
    owners: bool = False,
    allow_external: bool = False,
    defeat_icmp_ratelimit: bool = False,
    family: int | None = None,
    argv: Sequence[str] = (),
) -> ScanRequest:
    specs = list(targets)
    if input_list:
        specs.extend(read_target_file(input_list))
    if not specs:
        raise UsageError("no targets given (name hosts, or use -iL FILE)")
    addresses = expand_targets(specs, exclude=exclude, family=family)
    check_targets(addresses, allow_external=allow_external)

    techs = tuple(techniques) or ((Technique.FTP_BOUNCE,) if bounce else (Technique.CONNECT,))
    if bounce and Technique.FTP_BOUNCE not in techs:
        techs = (*techs, Technique.FTP_BOUNCE)  # -b beside other -s flags adds the bounce scan
    relay: BounceRelay | None = None
    if Technique.FTP_BOUNCE in techs:
        if not bounce:
            raise UsageError("FTP bounce scan needs -b [user:pass@]relay[:port]")
        try:
            relay = BounceRelay.parse(bounce)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
        relay_addr = expand_targets([relay.host])[0]
        check_targets([relay_addr], allow_external=allow_external)
        relay = BounceRelay(relay_addr, relay.port, relay.user, relay.password)

    if ports is not None and top is not None:
        raise UsageError("use either -p or --top-ports, not both")
    plan: PortPlan
    if ports is not None:
        plan = parse_ports(ports)
    elif top is not None:
        if top <= 0:
            raise UsageError("--top-ports must be positive")
        plan = PortPlan(
            tuple(sorted(top_ports(top, Proto.TCP))), tuple(sorted(top_ports(top, Proto.UDP)))
        )
    else:
        plan = default_ports()
    for tech in techs:
        if not plan.for_proto(tech.proto):
            raise TargetError(
                f"no {tech.proto} ports to scan for {tech} (check the T:/U: prefixes)"
            )
    try:
        timing = resolve(
            timing_level,
            max_retries=max_retries,
            min_rate=min_rate,
            max_rate=max_rate,
            scan_delay_ms=scan_delay_ms,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ScanRequest(
        targets=tuple(addresses),
        ports=plan,
        techniques=techs,
        timing=timing,
        randomize_ports=randomize_ports,
        bounce=relay,
        owners=owners,
        defeat_icmp_ratelimit=defeat_icmp_ratelimit,
        argv=tuple(argv),
    )


def parse_duration_ms(text: str) -> float:
    """nmap time values: ``500`` (ms for --scan-delay), ``500ms``, ``2s``, ``1m``, ``1h``."""
    units = {"ms": 1.0, "s": 1000.0, "m": 60_000.0, "h": 3_600_000.0}
    text = text.strip().lower()
    for suffix in ("ms", "s", "m", "h"):
        if text.endswith(suffix):
            number = text[: -len(suffix)]
            break
    else:
        number, suffix = text, "ms"
    try:
        value = float(number)
    except ValueError:
        raise UsageError(f"bad time value {text!r} (e.g. 250ms, 2s)") from None
    if value < 0:
        raise UsageError(f"negative time value {text!r}")
    ms = value * units[suffix]
    if not math.isfinite(ms):  # nan, inf, 1e999: a scan would wait forever
        raise UsageError(f"bad time value {text!r} (e.g. 250ms, 2s)")
    return ms
