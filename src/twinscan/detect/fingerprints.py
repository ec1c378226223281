"""Which tool sent a set of probes, from constants in their headers.

Each rule looks at the first packet of every TCP contact in an alert's scope; a tool is named
when at least ``SHARE`` of them match, so one odd packet does not decide and chance matches
(1 in 65536 for an IP ID rule) do not either.

- **masscan**: IP ID = (destination address XOR destination port XOR sequence number), low 16
  bits. robertdavidgraham/masscan ``src/templ-pkt.c``, ``template_set_target_ipv4``:
  ``ip_id = ip_them ^ port_them ^ seqno``.
- **zmap**: the constant IP ID 54321 of ZMap's packet helper
  (zmap/zmap ``src/probe_modules/packet.c``, ``make_ip_header``: ``ip_id = htons(54321)``);
  releases since 2023 may pass their own IP ID and OS-like options, which this rule misses.
- **nmap**: raw TCP probes with window 1024 (nmap ``tcpip.cc``/``scan_engine_raw.cc``) and,
  on SYN probes, exactly one option, MSS 1460 (``TCP_SYN_PROBE_OPTIONS "\\x02\\x04\\x05\\xb4"``
  in ``nmap.h``); other raw probes carry no options. This is what Emerging Threats
  ``ET SCAN NMAP -sS window 1024`` (sid 2009582) matches. nmap's IP IDs are random.
- **twinscan**: the same window and options as nmap on purpose (``twinscan.protocol.packets``:
  ``WINDOW = 1024``, MSS-only SYN), but its IP IDs count up by one per probe sent
  (``ProbeBuilder._tcp``: ``ip_id_base + counter``). Told from nmap by consecutive probes
  whose IP IDs differ by 1 to ``MAX_STEP`` (other techniques of the same run share the
  counter).

UDP probes carry none of these marks (nmap's and twinscan's payloads are the same, IP IDs
random), nor do kernel-made connect() SYNs: their tool is left empty.
"""

from __future__ import annotations

from typing import Any, Final

import numpy as np

from twinscan.core.vocab import Technique
from twinscan.detect.contacts import TECH_CODE, Contacts
from twinscan.detect.fields import PROTO_TCP

SHARE: Final = 0.9
NMAP_WINDOW: Final = 1024
ZMAP_IPID: Final = 54321
MAX_STEP: Final = 8
#: Share of consecutive IP ID steps in 1..MAX_STEP that makes nmap-like probes twinscan's.
SEQUENTIAL_SHARE: Final = 0.8


def masscan(c: Contacts) -> Any:
    """Per contact: does the IP ID follow masscan's formula?"""
    return (c.proto == PROTO_TCP) & (c.ipid == ((c.dst ^ c.dport ^ c.seq) & 0xFFFF))


def zmap(c: Contacts) -> Any:
    return (c.proto == PROTO_TCP) & (c.ipid == ZMAP_IPID)


def nmap_like(c: Contacts) -> Any:
    """Window 1024; MSS-only options on SYN probes, no options on the others."""
    syn = c.technique == TECH_CODE[Technique.SYN]
    opts = np.where(syn, c.mss_only, c.doff == 5)
    return (c.proto == PROTO_TCP) & (c.win == NMAP_WINDOW) & opts


def sequential_ipids(ipid_in_send_order: Any) -> bool:
    """Do the IP IDs count up (twinscan) rather than jump at random (nmap)?"""
    if ipid_in_send_order.shape[0] < 3:
        return False
    step = np.diff(ipid_in_send_order) % 65536
    return bool(np.mean((step >= 1) & (step <= MAX_STEP)) >= SEQUENTIAL_SHARE)


def tool(c: Contacts) -> str:
    """The tool that sent the TCP contacts of ``c`` ("" when no fingerprint matches)."""
    tcp = c.proto == PROTO_TCP
    n = int(np.count_nonzero(tcp))
    if n == 0:
        return ""
    if n >= 2 and np.count_nonzero(masscan(c)) >= SHARE * n:
        return "masscan"
    if n >= 2 and np.count_nonzero(zmap(c)) >= SHARE * n:
        return "zmap"
    if np.count_nonzero(nmap_like(c)) >= SHARE * n:
        order = np.argsort(c.t_probe[tcp], kind="stable")
        return "twinscan" if sequential_ipids(c.ipid[tcp][order]) else "nmap"
    return ""


def os_made_syn(c: Contacts) -> Any:
    """SYNs with an operating system's option list (MSS, SACK, timestamps, window scale:
    at least 12 option bytes), as connect() sends; raw scanners send fewer."""
    return (c.technique == TECH_CODE[Technique.SYN]) & (c.doff >= 8) & (c.win != NMAP_WINDOW)
