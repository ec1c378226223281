"""Classic BPF filters for the raw receive sockets, built from ``twinscan.protocol.wire``.

A raw ``IPPROTO_TCP``/``IPPROTO_UDP`` socket sees every such datagram the host receives (and,
on ``lo``, the ones it sends); the kernel runs these filters first, so the engine wakes only
for replies to this scan's source port and ICMP errors quoting it. ``bpf_run`` interprets a
program like the kernel does, for the tests.
"""

from __future__ import annotations

import ctypes
import socket
import struct
from collections.abc import Sequence

from twinscan.protocol.wire import (
    ICMP,
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
            elif code == _JEQ_K:
                pc += jt if a == k else jf
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
