"""The capture reader and field extraction: formats, link types, damage, arbitrary bytes."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
from detect_frames import MSS_1460, icmp_unreach, ip4, pcap, pcapng, tcp, udp
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import REPO
from twinscan.detect import capture as cap
from twinscan.detect.capture import NotACapture, read_capture
from twinscan.detect.fields import extract

CAPTURES = REPO / "fixtures" / "captures"

SYN = tcp("198.18.0.1", "198.18.0.10", 40000, 80, 0x02, seq=7, options=MSS_1460, ipid=4242)
RST = tcp("198.18.0.10", "198.18.0.1", 80, 40000, 0x14, ack=8, win=0)
DNS = udp("198.18.0.11", "198.18.0.10", 5353, 53, b"\x12\x34" + b"\0" * 10)
PACKETS = [(1000.25, SYN), (1000.5, RST), (1001.0, DNS)]


def test_pcap_fields_are_exact() -> None:
    p = extract(read_capture(pcap(PACKETS)))
    assert len(p) == 3
    assert p.ts.tolist() == [1000.25, 1000.5, 1001.0]
    assert p.src.tolist() == [ip4("198.18.0.1"), ip4("198.18.0.10"), ip4("198.18.0.11")]
    assert p.proto.tolist() == [6, 6, 17]
    assert p.sport.tolist() == [40000, 80, 5353]
    assert p.dport.tolist() == [80, 40000, 53]
    assert p.flags.tolist() == [0x02, 0x14, 0]
    assert p.win.tolist() == [1024, 0, 0]
    assert p.seq[0] == 7 and p.ack[1] == 8
    assert p.ipid[0] == 4242
    assert p.mss_only.tolist() == [True, False, False]
    assert p.doff.tolist() == [6, 5, 0]
    assert p.paylen.tolist() == [0, 0, 12]


@pytest.mark.parametrize(
    "linktype",
    [
        cap.LINKTYPE_ETHERNET,
        cap.LINKTYPE_RAW,
        cap.LINKTYPE_IPV4,
        cap.LINKTYPE_NULL,
        cap.LINKTYPE_LINUX_SLL,
        cap.LINKTYPE_LINUX_SLL2,
    ],
)
def test_every_link_type_gives_the_same_table(linktype: int) -> None:
    want = extract(read_capture(pcap(PACKETS)))
    got = extract(read_capture(pcap(PACKETS, linktype)))
    for name in ("src", "dst", "sport", "dport", "flags", "ipid", "paylen"):
        assert getattr(got, name).tolist() == getattr(want, name).tolist(), name


@pytest.mark.parametrize(
    ("tsresol", "big"), [(None, False), (None, True), (9, False), (0x80 | 20, False)]
)
def test_pcapng_equals_pcap(tsresol: int | None, big: bool) -> None:
    fr = read_capture(pcapng(PACKETS, tsresol=tsresol, big=big))
    assert fr.fmt == "pcapng" and not fr.warnings
    got, want = extract(fr), extract(read_capture(pcap(PACKETS)))
    assert np.allclose(got.ts, want.ts, atol=1e-5)
    assert got.dport.tolist() == want.dport.tolist()
    assert got.flags.tolist() == want.flags.tolist()


def test_nanosecond_big_endian_pcap() -> None:
    import struct

    rec = struct.pack(">IIII", 5, 250_000_000, len(SYN), len(SYN)) + SYN
    data = struct.pack(">IHHiIII", cap.PCAP_MAGIC_NS, 2, 4, 0, 0, 65535, cap.LINKTYPE_RAW) + rec
    p = extract(read_capture(data))
    assert p.ts.tolist() == [5.25]
    assert p.dport.tolist() == [80]


def test_vlan_tag_and_non_ipv4_frames() -> None:
    import struct

    vlan = b"\0" * 12 + struct.pack("!HHH", 0x8100, 7, 0x0800) + SYN
    arp = b"\0" * 12 + struct.pack("!H", 0x0806) + b"\0" * 28
    data = cap.pcap_header() + cap.pcap_record(1.0, vlan) + cap.pcap_record(2.0, arp)
    p = extract(read_capture(data))
    assert p.dport.tolist() == [80]
    assert p.skipped == 1


def test_icmp_error_quotes_the_probe() -> None:
    probe = udp("198.18.0.1", "198.18.0.10", 33000, 161)
    p = extract(read_capture(pcap([(1.0, icmp_unreach("198.18.0.10", probe))])))
    assert p.icmp_type.tolist() == [3] and p.icmp_code.tolist() == [3]
    assert p.inner_src.tolist() == [ip4("198.18.0.1")]
    assert p.inner_dport.tolist() == [161] and p.inner_sport.tolist() == [33000]
    assert p.inner_proto.tolist() == [17]


def test_truncated_capture_keeps_what_it_read() -> None:
    data = pcap(PACKETS)
    fr = read_capture(data[:-5])
    assert len(fr) == 2
    assert fr.warnings and "truncated" in fr.warnings[0]
    fr = read_capture(pcapng(PACKETS)[:-7])
    assert len(fr) == 2 and "truncated" in fr.warnings[0]


def test_a_packet_cut_by_the_snaplen_is_kept_when_its_headers_are_there() -> None:
    frame = b"\0" * 12 + b"\x08\x00" + SYN
    rec = cap.pcap_record(1.0, frame[:54])  # Ethernet + IP + 20 bytes of TCP
    p = extract(read_capture(cap.pcap_header() + rec))
    assert p.dport.tolist() == [80]
    assert p.mss_only.tolist() == [False]  # the option bytes were not captured


@pytest.mark.parametrize("data", [b"", b"abc", b"GIF89a" + b"\0" * 40, b"\xd4\xc3\xb2\xa1\x02\x00"])
def test_not_a_capture(data: bytes) -> None:
    with pytest.raises(NotACapture):
        read_capture(data)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_crash(data: bytes) -> None:
    for blob in (data, cap.pcap_header() + data, pcapng([])[:40] + data):
        try:
            fr = read_capture(blob)
        except NotACapture:
            continue
        extract(fr)  # any garbage inside a capture parses to some table without raising


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2**32 - 1),
            st.integers(1, 65535),
            st.integers(0, 255),
            st.integers(0, 65535),
        ),
        max_size=30,
    )
)
def test_fields_round_trip(rows: list[tuple[int, int, int, int]]) -> None:
    import ipaddress

    pkts = [
        (float(i), tcp(str(ipaddress.IPv4Address(a)), "198.18.0.10", 1234, port, fl, win=w))
        for i, (a, port, fl, w) in enumerate(rows)
    ]
    p = extract(read_capture(pcap(pkts)))
    assert p.src.tolist() == [a for a, *_ in rows]
    assert p.dport.tolist() == [r[1] for r in rows]
    assert p.flags.tolist() == [r[2] for r in rows]
    assert p.win.tolist() == [r[3] for r in rows]


@pytest.mark.skipif(shutil.which("tcpdump") is None, reason="needs tcpdump")
def test_packet_count_and_ports_match_tcpdump_on_a_real_capture() -> None:
    path = CAPTURES / "nmap-syn.pcap"
    out = subprocess.run(
        ["tcpdump", "-nn", "-q", "-r", str(path)], capture_output=True, text=True, timeout=60
    ).stdout.splitlines()
    p = extract(read_capture(path.read_bytes()))
    assert len(p) == len(out)
    # "... IP 198.18.99.2.40000 > 198.18.99.1.80: tcp 0": the destination port
    want = [int(line.split(" > ")[1].split(":")[0].rsplit(".", 1)[1]) for line in out]
    assert p.dport.tolist() == want
