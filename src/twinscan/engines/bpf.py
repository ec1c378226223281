"""Classic BPF filters for the raw receive sockets, built from ``twinscan.protocol.wire``.

A raw ``IPPROTO_TCP``/``IPPROTO_UDP`` socket sees every such datagram the host receives (and,
on ``lo``, the ones it sends); the kernel runs these filters first, so the engine wakes only
for replies to this scan's source port and ICMP errors quoting it. ``bpf_run`` interprets a
program like the kernel does, for the tests.

On an ``AF_INET6`` raw socket the kernel runs the filter on the transport header or ICMPv6
message (the IPv6 header is not part of what the socket sees), so the IPv6 filters load at
absolute offsets from there.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

from twinscan.protocol.wire import (
    ICMP,
    ICMP6,
    ICMP6_ERRORS,
    ICMP6_QUOTED_SPORT,
    ICMP_QUOTED_SPORT,
    ICMP_TIMXCEED,
    ICMP_UNREACH,
    IP_VER_IHL,
    TCP,
)

SO_ATTACH_FILTER = 26
#: What a filter returns to accept a datagram: how many of its bytes to keep (all of them).
ACCEPT = 65535

# Opcodes (linux/filter.h)
_LDX_B_MSH = 0xB1  # X <- 4*([k]&0xf): the IPv4 header length, from ver_ihl
_LD_H_IND = 0x48  # A <- half word at [X+k]
_LD_B_IND = 0x50  # A <- byte at [X+k]
_LD_H_ABS = 0x28  # A <- half word at [k]
_LD_B_ABS = 0x30  # A <- byte at [k]
_JGT_K = 0x25
_JEQ_K = 0x15
_RET_K = 0x06

BpfInsn = tuple[int, int, int, int]


def bpf_dport_filter(sport: int) -> list[BpfInsn]:
    """Accept TCP/UDP datagrams whose destination port is ``sport`` (IPv4, any IHL).

    One program serves both: TCP and UDP put ``dport`` at the same offset (``wire`` checks).
    """
    return [
        (_LDX_B_MSH, 0, 0, IP_VER_IHL),
        (_LD_H_IND, 0, 0, TCP.offset("dport")),
        (_JEQ_K, 0, 1, sport),
        (_RET_K, 0, 0, ACCEPT),
        (_RET_K, 0, 0, 0),
    ]


def bpf_icmp_filter(sport: int) -> list[BpfInsn]:
    """Accept ICMP unreachable (3) and time-exceeded (11) quoting a datagram from ``sport``.

    Our probes carry no IP options, so the quoted source port sits at ``ICMP_QUOTED_SPORT``
    (8 + 20 bytes) into the ICMP message.
    """
    return [
        (_LDX_B_MSH, 0, 0, IP_VER_IHL),
        (_LD_B_IND, 0, 0, ICMP.offset("type")),
        (_JEQ_K, 1, 0, ICMP_UNREACH),
        (_JEQ_K, 0, 3, ICMP_TIMXCEED),
        (_LD_H_IND, 0, 0, ICMP_QUOTED_SPORT),
        (_JEQ_K, 0, 1, sport),
        (_RET_K, 0, 0, ACCEPT),
        (_RET_K, 0, 0, 0),
    ]


def bpf_dport_filter6(sport: int) -> list[BpfInsn]:
    """``bpf_dport_filter`` for an ``AF_INET6`` raw TCP or UDP socket (no IP header)."""
    return [
        (_LD_H_ABS, 0, 0, TCP.offset("dport")),
        (_JEQ_K, 0, 1, sport),
        (_RET_K, 0, 0, ACCEPT),
        (_RET_K, 0, 0, 0),
    ]


def bpf_icmp6_filter(sport: int) -> list[BpfInsn]:
    """Accept ICMPv6 errors (types 1-4) quoting a datagram from ``sport``.

    Our probes carry no extension headers, so the quoted source port sits at
    ``ICMP6_QUOTED_SPORT`` (8 + 40 bytes) into the ICMPv6 message.
    """
    lo, hi = min(ICMP6_ERRORS), max(ICMP6_ERRORS)
    if set(ICMP6_ERRORS) != set(range(lo, hi + 1)):
        raise AssertionError("ICMPv6 error types must be a run")  # pragma: no cover
    return [
        (_LD_B_ABS, 0, 0, ICMP6.offset("type")),
        (_JGT_K, 4, 0, hi),
        (_JGT_K, 0, 3, lo - 1),
        (_LD_H_ABS, 0, 0, ICMP6_QUOTED_SPORT),
        (_JEQ_K, 0, 1, sport),
        (_RET_K, 0, 0, ACCEPT),
        (_RET_K, 0, 0, 0),
    ]


def bpf_run(program: Sequence[BpfInsn], packet: bytes) -> int:
    """Interpret ``program`` on ``packet`` like the kernel does (for tests): the return value."""
    a = x = 0
    pc = 0
    for _ in range(len(program) + 1):
        code, jt, jf, k = program[pc]
        pc += 1
        try:
            if code == _LDX_B_MSH:
                x = 4 * (packet[k] & 0x0F)
            elif code == _LD_H_IND:
                a = struct.unpack_from("!H", packet, x + k)[0]
            elif code == _LD_B_IND:
                a = packet[x + k]
            elif code == _LD_H_ABS:
                a = struct.unpack_from("!H", packet, k)[0]
            elif code == _LD_B_ABS:
                a = packet[k]
            elif code == _JEQ_K:
                pc += jt if a == k else jf
            elif code == _JGT_K:
                pc += jt if a > k else jf
            elif code == _RET_K:
                return k
            else:
                raise ValueError(f"opcode {code:#x}")
        except (IndexError, struct.error):
            return 0  # the kernel drops a packet a load runs past
    raise ValueError("BPF program ran off its end")


def attach(sock: socket.socket, program: Sequence[BpfInsn]) -> object:
    """Attach ``program`` to ``sock`` (``SO_ATTACH_FILTER``)."""
    insns = b"".join(struct.pack("HBBI", *insn) for insn in program)
    buf = ctypes.create_string_buffer(insns)
    fprog = struct.pack("HL", len(program), ctypes.addressof(buf))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)
    return buf  # the kernel copied it, but keep it alive until then
