"""The results schema: dtypes, validation and a lossless CSV round trip."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from strategies import verdicts
from twinscan.core.schema import (
    COLUMNS,
    PortVerdict,
    conform,
    iana_codes,
    iana_codes_plain,
    to_frame,
)
from twinscan.core.vocab import Engine, IanaRange, PortState, Proto, Reason, Technique
from twinscan.formats.csv import read_csv, write_csv


@settings(max_examples=60, deadline=None)
@given(st.lists(verdicts, max_size=30))
def test_csv_round_trip_is_lossless(rows: list[PortVerdict]) -> None:
    frame = to_frame(rows)
    buf = io.StringIO()
    write_csv(frame, buf)
    back = read_csv(io.StringIO(buf.getvalue()))
    pd.testing.assert_frame_equal(back, frame)
    buf2 = io.StringIO()
    write_csv(back, buf2)
    assert buf2.getvalue() == buf.getvalue()


def test_dtypes_are_compact() -> None:
    frame = to_frame(
        [
            PortVerdict(
                Engine.NATIVE,
                Technique.SYN,
                "127.0.0.1",
                Proto.TCP,
                443,
                PortState.OPEN,
                Reason.SYN_ACK,
                64,
            )
        ]
    )
    assert list(frame.columns) == list(COLUMNS)
    assert str(frame["port"].dtype) == "uint16"
    assert str(frame["reason_ttl"].dtype) == "UInt8"
    for col in ("engine", "technique", "proto", "state", "reason", "iana_range"):
        assert isinstance(frame[col].dtype, pd.CategoricalDtype), col
    assert frame["iana_range"].iloc[0] == "well-known"
    assert pd.isna(frame["rtt_ms"].iloc[0])


@pytest.mark.parametrize(
    ("port", "expected"),
    [(0, "well-known"), (1023, "well-known"), (1024, "registered"), (49151, "registered"),
     (49152, "dynamic"), (65535, "dynamic")],
)  # fmt: skip
def test_iana_range_boundaries(port: int, expected: str) -> None:
    assert IanaRange.of(port).value == expected


def test_iana_codes_agree_on_every_port() -> None:
    """The table behind the CSV writer, numpy's searchsorted and ``IanaRange.of`` give every
    port 0-65535 the same range."""
    ports = range(65536)
    plain = iana_codes_plain(ports)
    assert plain == iana_codes(ports).tolist()
    ranges = list(IanaRange)
    assert [ranges[c] for c in plain] == [IanaRange.of(p) for p in ports]


def test_conform_rejects_unknown_state() -> None:
    frame = to_frame(
        [
            PortVerdict(
                Engine.NMAP,
                Technique.UDP,
                "::1",
                Proto.UDP,
                53,
                PortState.OPEN,
                Reason.UDP_RESPONSE,
            )
        ]
    ).astype({"state": "object"})
    frame.loc[0, "state"] = "ajar"
    with pytest.raises(ValueError, match="state: unknown value"):
        conform(frame)
