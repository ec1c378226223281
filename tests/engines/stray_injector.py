"""Forge stray replies inside a lab host's namespace while a scan of that host runs.

    ip netns exec <prefix>-h-<host> python tests/engines/stray_injector.py SCANNER OTHER SECONDS

Sniffs the host's eth0 (scapy, AF_PACKET) for ``SECONDS`` (bounded) and, for every probe the
scanner sends to this host, forges what a confused or hostile network could send back:

* TCP: a SYN/ACK and a RST|ACK from the probed port with a wrong acknowledgement number (the
  cookie), the same from OTHER (an unrelated lab address), and ICMP admin-prohibited errors
  quoting the probe with a wrong sequence number, and quoting a port never probed;
* UDP: ICMP port-unreachable quoting the probe with a wrong IP ID (the UDP cookie) and
  quoting a port never probed; a UDP datagram from OTHER;
* every real reply this host's kernel sends the scanner is sent twice more at once
  (duplicates) and once more a second later (late).

Only lab addresses (198.18.0.0/16) are used; prints the number of packets forged.
"""

from __future__ import annotations

import random
import sys
import threading
import time

#: The TTL of every forged packet, so the sniffer never takes its own packets for the kernel's.
MARK = 13


def main() -> int:
    from scapy.all import ICMP, IP, TCP, UDP, conf, sniff  # type: ignore[import-untyped]

    scanner, other, seconds = sys.argv[1], sys.argv[2], float(sys.argv[3])
    for addr in (scanner, other):
        if not addr.startswith("198.18."):
            raise SystemExit(f"not a lab address: {addr}")
    conf.verb = 0
    sock = conf.L3socket()
    rng = random.Random(7)
    forged = 0
    late: list[tuple[float, object]] = []
    lock = threading.Lock()

    def out(pkt: object) -> None:
        nonlocal forged
        sock.send(pkt)
        forged += 1

    def on_packet(p) -> None:  # type: ignore[no-untyped-def]
        if IP not in p:
            return
        ip = p[IP]
        if ip.src == scanner and TCP in p and not p[TCP].flags.R:  # a TCP probe (not a RST)
            t = p[TCP]
            me = ip.dst
            bad_ack = (t.seq + 1 + rng.randrange(1, 2**31)) % 2**32
            for src in (me, other):
                out(IP(src=src, dst=scanner, ttl=MARK) / TCP(sport=t.dport, dport=t.sport, flags="SA",
                                                  seq=rng.randrange(2**32), ack=bad_ack))  # fmt: skip
                out(IP(src=src, dst=scanner, ttl=MARK) / TCP(sport=t.dport, dport=t.sport, flags="RA",
                                                  seq=0, ack=bad_ack, window=512))  # fmt: skip
            quoted = IP(src=scanner, dst=me) / TCP(sport=t.sport, dport=t.dport,
                                                  seq=(t.seq + 12345) % 2**32, flags=t.flags)  # fmt: skip
            out(IP(src=me, dst=scanner, ttl=MARK) / ICMP(type=3, code=13) / bytes(quoted)[:28])
            never = IP(src=scanner, dst=me) / TCP(sport=t.sport, dport=(t.dport % 60000) + 5000,
                                                 seq=t.seq)  # fmt: skip
            out(IP(src=me, dst=scanner, ttl=MARK) / ICMP(type=3, code=13) / bytes(never)[:28])
        elif ip.src == scanner and UDP in p:  # a UDP probe to this host
            u = p[UDP]
            me = ip.dst
            quoted = IP(src=scanner, dst=me, id=(ip.id + 777) % 65536) / UDP(sport=u.sport,
                                                                            dport=u.dport)  # fmt: skip
            out(IP(src=me, dst=scanner, ttl=MARK) / ICMP(type=3, code=3) / bytes(quoted)[:28])
            never = IP(src=scanner, dst=me, id=ip.id) / UDP(sport=u.sport,
                                                           dport=(u.dport % 60000) + 5000)  # fmt: skip
            out(IP(src=me, dst=scanner, ttl=MARK) / ICMP(type=3, code=3) / bytes(never)[:28])
            out(IP(src=other, dst=scanner, ttl=MARK) / UDP(sport=u.dport, dport=u.sport) / b"stray")
        elif ip.dst == scanner and ip.ttl != MARK:  # this host's kernel answering the scanner
            real = IP(bytes(ip))
            real.ttl = MARK
            del real.chksum
            out(real)
            out(real)
            with lock:
                late.append((time.monotonic() + 1.0, real))
        with lock:
            due = [pk for t0, pk in late if t0 <= time.monotonic()]
            late[:] = [(t0, pk) for t0, pk in late if t0 > time.monotonic()]
        for pk in due:
            out(pk)

    sniff(iface="eth0", prn=on_packet, store=False, timeout=seconds)
    for _t0, pk in late:
        out(pk)
    print(forged)
    return 0


if __name__ == "__main__":
    sys.exit(main())
