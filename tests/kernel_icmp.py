"""The kernel side of ICMP rate limiting, simulated for sans-IO tests (shared by the session and
the ICMP-estimator tests): Linux's per-destination token bucket for ICMP errors."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass
class KernelBucket:
    """``burst`` tokens, one more every ``interval`` seconds (Linux: 6, then one per second)."""

    interval: float = 1.0
    burst: float = 6.0
    tokens: float = 6.0
    at: float = 0.0

    def allow(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.at) / self.interval)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
