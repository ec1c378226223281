"""Pure pieces of the lab: nftables scripts, service replies, nmap command lines, prefixes."""

from __future__ import annotations

import struct

import pytest

from twinscan.core.errors import UsageError
from twinscan.core.vocab import PortState, Reason, Technique
from twinscan.lab import load_spec, parse_spec
from twinscan.lab.netns import Names, nft_ruleset, resolve_prefix, services_config
from twinscan.lab.services import dns_reply, ntp_reply
from twinscan.lab.truth import truth_frame
from twinscan.lab.verify import compare, known_nmap_error, nmap_argv

S, R, T = PortState, Reason, Technique


def test_nft_ruleset_orders_loss_conntrack_then_rules() -> None:
    spec = load_spec()
    text = nft_ruleset(spec.host("fw"))
    assert text is not None
    lines = [line.strip() for line in text.splitlines()]
    assert lines.index('iif "lo" accept') < next(
        i for i, line in enumerate(lines) if "numgen random mod 1000 < 100" in line
    )
    assert any("ct state new tcp flags & (fin|syn|rst|ack) != syn" in line for line in lines)
    acl = nft_ruleset(spec.host("acl"))
    assert acl is not None
    assert "tcp dport { 100-104 } counter drop" in acl
    assert "tcp dport { 110 } counter reject with tcp reset" in acl
    assert "tcp dport { 113 } counter reject with icmp type admin-prohibited" in acl
    assert "udp dport { 19 } counter reject with icmp type net-unreachable" in acl
    assert nft_ruleset(spec.host("plain")) is None


def test_services_config_is_json_ready() -> None:
    cfg = services_config(load_spec().host("plain"))
    assert cfg["address"] == "198.18.0.10"
    assert [53, "dns"] in cfg["udp"] and cfg["ftp"] is None


def test_dns_reply_echoes_id_and_answers_a() -> None:
    qname = b"\x03lab\x07example\x00"
    query = struct.pack("!HHHHHH", 0xBEEF, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)
    reply = dns_reply(query)
    assert reply is not None
    qid, flags, qd, an = struct.unpack("!HHHH", reply[:8])
    assert (qid, qd, an) == (0xBEEF, 1, 1)
    assert flags & 0x8000 and flags & 0x000F == 0
    assert reply.endswith(bytes([198, 18, 0, 53]))
    # nmap's UDP/53 payload: a bare status-opcode header. Any reply makes the port open.
    status = dns_reply(b"\x00\x00\x10\x00" + b"\x00" * 8)
    assert status is not None and status[3] & 0x0F == 4
    assert dns_reply(b"\x00") is None
    assert dns_reply(reply) is None  # never answer a response


def test_ntp_reply_is_server_mode_with_origin() -> None:
    query = bytes([0xE3]) + b"\x00" * 39 + b"ORIGINTS"
    reply = ntp_reply(query)
    assert reply is not None and len(reply) == 48
    assert reply[0] & 0x7 == 4 and (reply[0] >> 3) & 0x7 == 4
    assert reply[24:32] == b"ORIGINTS"
    assert ntp_reply(b"short") is None


def test_nmap_argv_covers_the_universe() -> None:
    spec = load_spec()
    syn = nmap_argv(spec, T.SYN)
    assert syn[:5] == ["nmap", "-sS", "-T4", "-n", "-Pn"]
    assert syn[syn.index("-p") + 1].startswith("1-104,")
    assert syn[-len(spec.hosts) :] == [h.address for h in spec.hosts]
    bounce = nmap_argv(spec, T.FTP_BOUNCE)
    assert bounce[1:3] == ["-b", "anonymous:lab@198.18.0.14:21"]
    assert bounce[-2:] == ["198.18.0.10", "198.18.0.11"]


def test_known_errors_are_narrow() -> None:
    spec = load_spec()
    rl, fw, plain = (spec.host(n).address for n in ("rl", "fw", "plain"))
    closed = (S.CLOSED, R.PORT_UNREACH)
    silent_udp = (S.OPEN_FILTERED, R.NO_RESPONSE)
    assert known_nmap_error(spec, T.UDP, rl, closed, silent_udp) == "icmp-ratelimit"
    assert known_nmap_error(spec, T.UDP, plain, closed, silent_udp) is None
    assert (
        known_nmap_error(spec, T.SYN, rl, (S.CLOSED, R.RESET), (S.FILTERED, R.NO_RESPONSE)) is None
    )
    assert (
        known_nmap_error(spec, T.SYN, fw, (S.CLOSED, R.RESET), (S.FILTERED, R.NO_RESPONSE))
        == "loss"
    )
    assert known_nmap_error(spec, T.SYN, fw, (S.CLOSED, R.RESET), (S.OPEN, R.SYN_ACK)) is None


def test_compare_reports_missing_and_wrong_cells() -> None:
    spec = parse_spec('[scan]\ntcp_ports = "1-3"\n[hosts.a]\naddress = "198.18.0.5"\ntcp = [2]\n')
    truth = truth_frame(spec, (T.SYN,))
    scan = truth.copy()
    scan["engine"] = "nmap"
    assert compare(spec, truth, scan) == []
    scan.loc[scan["port"] == 2, "state"] = "closed"
    scan = scan[scan["port"] != 3]
    got = {(m.port, m.got) for m in compare(spec, truth, scan)}
    assert got == {(2, (S.CLOSED, R.SYN_ACK)), (3, None)}


@pytest.mark.parametrize("bad", ["", "1ab", "has-dash", "waytoolong9"])
def test_prefix_validation(bad: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINSCAN_LAB_PREFIX", raising=False)
    if bad == "":
        assert resolve_prefix(bad) == "ts"
        return
    with pytest.raises(UsageError, match="prefix"):
        resolve_prefix(bad)


def test_prefix_from_env_and_names_fit_ifnamsiz(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TWINSCAN_LAB_PREFIX", "tsT1a2b")
    names = Names(resolve_prefix())
    assert names.scanner_ns == "tsT1a2b-scan" and names.host_ns("fw") == "tsT1a2b-h-fw"
    longest = Names("abcdefgh")
    assert len(longest.veth(99)) <= 15 and len(longest.bridge) <= 15
    assert longest.owns("abcdefgh-scan") and not longest.owns("abcdefghi-scan")
