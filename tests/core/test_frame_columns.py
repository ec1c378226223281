"""``schema.frame_from_columns`` builds the same frame as ``to_frame`` (the reference)."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from twinscan.core.schema import PortVerdict, category_code, frame_from_columns, to_frame
from twinscan.core.vocab import Engine, PortState, Proto, Reason, Technique

verdict_rows = st.lists(
    st.tuples(
        st.sampled_from(["127.0.0.1", "198.18.0.10", "198.18.0.11"]),
        st.integers(0, 65535),
        st.sampled_from(list(PortState)),
        st.sampled_from(list(Reason)),
        st.none() | st.integers(0, 255),
        st.none() | st.sampled_from(["198.18.0.1", "198.18.0.2"]),
        st.none() | st.floats(0, 5000, allow_nan=False, width=32),
    ),
    max_size=60,
)


@settings(max_examples=120, deadline=None)
@given(
    engine=st.sampled_from(list(Engine)),
    technique=st.sampled_from(list(Technique)),
    proto=st.sampled_from(list(Proto)),
    rows=verdict_rows,
)
def test_equals_to_frame(
    engine: Engine,
    technique: Technique,
    proto: Proto,
    rows: list[tuple],  # type: ignore[type-arg]
) -> None:
    verdicts = [
        PortVerdict(engine, technique, h, proto, p, s, r, ttl, ip, rtt)
        for h, p, s, r, ttl, ip, rtt in rows
    ]
    got = frame_from_columns(
        engine=engine,
        technique=technique,
        proto=proto,
        host=[r[0] for r in rows],
        port=[r[1] for r in rows],
        state=[category_code("state", r[2].value) for r in rows],
        reason=[category_code("reason", r[3].value) for r in rows],
        reason_ttl=[r[4] for r in rows],
        reason_ip=[r[5] for r in rows],
        rtt_ms=[r[6] for r in rows],
    )
    pd.testing.assert_frame_equal(got, to_frame(verdicts))


def test_optional_columns_default_to_missing() -> None:
    got = frame_from_columns(
        engine=Engine.NATIVE,
        technique=Technique.SYN,
        proto=Proto.TCP,
        host=["127.0.0.1"] * 2,
        port=[1023, 1024],
        state=[category_code("state", "open")] * 2,
        reason=[category_code("reason", "syn-ack")] * 2,
    )
    assert got["reason_ttl"].isna().all() and got["rtt_ms"].isna().all()
    assert list(got["iana_range"].astype(str)) == ["well-known", "registered"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("port", [70000], "outside 0-65535"),
        ("state", [99], "code outside"),
        ("host", ["a", "b"], "2 values for 1 rows"),
    ],
)
def test_rejects_bad_columns(field: str, value: list[object], message: str) -> None:
    cols: dict[str, list[object]] = {"host": ["h"], "port": [1], "state": [0], "reason": [0]}
    cols[field] = value
    with pytest.raises(ValueError, match=message):
        frame_from_columns(
            engine=Engine.NATIVE,
            technique=Technique.SYN,
            proto=Proto.TCP,
            **cols,  # type: ignore[arg-type]
        )
