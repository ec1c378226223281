"""Hypothesis strategies shared by the tests."""

from __future__ import annotations

from hypothesis import strategies as st

from twinscan.core.schema import PortVerdict
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique

#: Any verdict the results schema can hold.
verdicts = st.builds(
    PortVerdict,
    engine=st.sampled_from(list(Engine)),
    technique=st.sampled_from(list(Technique)),
    host=st.sampled_from(["127.0.0.1", "198.18.0.10", "::1"]),
    proto=st.sampled_from(list(Proto)),
    port=st.integers(0, 65535),
    state=st.sampled_from(list(PortState)),
    reason=st.sampled_from(list(Reason)),
    reason_ttl=st.none() | st.integers(0, 255),
    reason_ip=st.none() | st.just("198.18.0.1"),
    rtt_ms=st.none() | st.floats(0, 10_000, width=32),
)
