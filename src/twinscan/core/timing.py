"""nmap's timing templates -T0..-T5 and the fine-grained overrides (pure data).

Values from nmap.cc (the ``-T`` case), NmapOps.cc and timing.cc; see nmap's refguide,
"Timing templates". Explicit options take precedence over the template, as in nmap.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Final


@dataclasses.dataclass(frozen=True, slots=True)
class Timing:
    level: int
    initial_rtt_timeout_ms: float
    min_rtt_timeout_ms: float
    max_rtt_timeout_ms: float
    max_retries: int
    scan_delay_ms: float
    max_tcp_scan_delay_ms: float
    max_udp_scan_delay_ms: float
    #: None = dynamic (congestion window between 1 and 300, nmap's default).
    max_parallelism: int | None
    #: congestion-avoidance increment and ssthresh divisor on a drop (timing.cc).
    ca_incr: int
    ssthresh_divisor: float
    host_timeout_ms: float | None = None
    min_rate: float | None = None
    max_rate: float | None = None


TEMPLATES: Final[dict[int, Timing]] = {
    0: Timing(0, 300_000, 100, 300_000, 10, 300_000, 1000, 1000, 1, 1, 1.5),
    1: Timing(1, 15_000, 100, 15_000, 10, 15_000, 1000, 1000, 1, 1, 1.5),
    2: Timing(2, 1000, 100, 10_000, 10, 400, 1000, 1000, 1, 1, 1.5),
    3: Timing(3, 1000, 100, 10_000, 10, 0, 1000, 1000, None, 1, 1.5),
    4: Timing(4, 500, 100, 1250, 6, 0, 10, 1000, None, 2, 4 / 3),
    5: Timing(5, 250, 50, 300, 2, 0, 5, 1000, None, 2, 1.25, host_timeout_ms=900_000),
}

#: nmap's congestion-control constants (timing.cc scan_performance_vars::init).
INITIAL_CWND: Final = 10
MAX_CWND: Final = 300
INITIAL_SSTHRESH: Final = 75
CC_SCALE_MAX: Final = 50
#: nmap's RLD_TIME_MS: extra wait before a new try number, to notice rate limiting.
RATE_LIMIT_DETECT_MS: Final = 1000


def resolve(
    level: int = 3,
    *,
    max_retries: int | None = None,
    min_rate: float | None = None,
    max_rate: float | None = None,
    scan_delay_ms: float | None = None,
    initial_rtt_timeout_ms: float | None = None,
    max_rtt_timeout_ms: float | None = None,
) -> Timing:
    """The template for ``-T<level>`` with the user's explicit options applied on top."""
    if level not in TEMPLATES:
        raise ValueError(f"timing template must be 0-5, not {level}")
    base = TEMPLATES[level]
    changes: dict[str, object] = {}
    if max_retries is not None:
        if max_retries < 0:
            raise ValueError("--max-retries must be >= 0")
        changes["max_retries"] = max_retries
    for name, rate in (("--min-rate", min_rate), ("--max-rate", max_rate)):
        if rate is not None and not math.isfinite(rate):  # nan compares false with 0
            raise ValueError(f"{name} must be a finite number > 0")
    if min_rate is not None:
        if min_rate <= 0:
            raise ValueError("--min-rate must be > 0")
        changes["min_rate"] = min_rate
    if max_rate is not None:
        if max_rate <= 0:
            raise ValueError("--max-rate must be > 0")
        changes["max_rate"] = max_rate
    if min_rate is not None and max_rate is not None and min_rate > max_rate:
        raise ValueError("--min-rate must not exceed --max-rate")
    if scan_delay_ms is not None:
        if scan_delay_ms < 0:
            raise ValueError("--scan-delay must be >= 0")
        changes["scan_delay_ms"] = scan_delay_ms
        # nmap: a scan delay above the max raises the max with it.
        changes["max_tcp_scan_delay_ms"] = max(base.max_tcp_scan_delay_ms, scan_delay_ms)
        changes["max_udp_scan_delay_ms"] = max(base.max_udp_scan_delay_ms, scan_delay_ms)
    if initial_rtt_timeout_ms is not None:
        changes["initial_rtt_timeout_ms"] = initial_rtt_timeout_ms
    if max_rtt_timeout_ms is not None:
        changes["max_rtt_timeout_ms"] = max_rtt_timeout_ms
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


#: nmap's names for the timing templates (``-T aggressive`` = ``-T4``).
TEMPLATE_NAMES: Final[dict[str, int]] = {
    "paranoid": 0,
    "sneaky": 1,
    "polite": 2,
    "normal": 3,
    "aggressive": 4,
    "insane": 5,
}


def parse_level(text: str) -> int:
    """``-T`` as nmap takes it: a digit 0-5 or a template name, any case."""
    value = text.strip().lower()
    if value in TEMPLATE_NAMES:
        return TEMPLATE_NAMES[value]
    if value.isdigit() and int(value) in TEMPLATES:
        return int(value)
    names = "|".join(TEMPLATE_NAMES)
    raise ValueError(f"-T takes 0-5 or a template name ({names}), not {text!r}")
