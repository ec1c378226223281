"""The services of one lab host, run inside its namespace by ``lab up``.

``python -m twinscan.lab.services '<json>'`` binds every TCP listener (accepts every connection,
so the accept queue never fills, and reads it until the peer closes or 10 s pass), every UDP socket (silent, dns, ntp, echo) and, when
asked, an anonymous FTP server that permits bounce (lab only). It prints ``ready`` on stdout
once everything is bound, then serves until SIGTERM.
"""

from __future__ import annotations

import json
import selectors
import signal
import socket
import struct
import sys
import tempfile
import threading
import time
from typing import Any

from twinscan.lab.spec import UdpKind

#: How long the FTP relay waits for a bounced data connection before answering 421.
FTP_ACTIVE_TIMEOUT_S = 3
#: How long the relay waits before "226 Transfer complete." (see BounceHandler.respond).
FTP_COMPLETE_DELAY_S = 0.5


def dns_reply(query: bytes) -> bytes | None:
    """A minimal DNS answer: same id and question; A/IN gets 198.18.0.53, anything else none."""
    if len(query) < 12:
        return None
    qid, flags, qdcount = struct.unpack("!HHH", query[:6])
    if flags & 0x8000:
        return None  # a response, not a query
    opcode = (flags >> 11) & 0xF
    question = b""
    qtype = qclass = 0
    if qdcount >= 1:
        i = 12
        while i < len(query) and query[i] != 0:
            i += 1 + query[i]
        end = i + 5
        if end > len(query):
            return None
        question = query[12:end]
        qtype, qclass = struct.unpack("!HH", query[i + 1 : end])
    rcode = 0 if opcode == 0 else 4  # NOTIMP for status/notify/... queries
    answer = b""
    if opcode == 0 and qtype == 1 and qclass == 1:
        answer = b"\xc0\x0c" + struct.pack("!HHIH", 1, 1, 60, 4) + bytes([198, 18, 0, 53])
    rflags = 0x8000 | (flags & 0x7900) | 0x0080 | rcode  # QR, opcode+RD kept, RA
    header = struct.pack("!HHHHHH", qid, rflags, 1 if question else 0, 1 if answer else 0, 0, 0)
    return header + question + answer


_NTP_EPOCH = 2208988800


def ntp_reply(query: bytes) -> bytes | None:
    """An NTP server (mode 4) reply to a client request (mode 3) of at least 48 bytes."""
    if len(query) < 48:
        return None
    version = (query[0] >> 3) & 0x7 or 4
    now = time.time() + _NTP_EPOCH
    ts = struct.pack("!II", int(now), int((now % 1) * 2**32))
    head = struct.pack("!BBbb", (version << 3) | 4, 2, 6, -20)
    return head + struct.pack("!II", 0, 0) + b"LAB\x00" + ts + query[40:48] + ts + ts


def _answer(kind: UdpKind, data: bytes) -> bytes | None:
    if kind is UdpKind.DNS:
        return dns_reply(data)
    if kind is UdpKind.NTP:
        return ntp_reply(data)
    if kind is UdpKind.ECHO:
        return data or b"twinscan-lab\n"
    return None


def _start_ftp(address: str, port: int) -> None:
    from pyftpdlib.authorizers import DummyAuthorizer
    from pyftpdlib.handlers import FTPHandler
    from pyftpdlib.handlers.ftp.dispatchers import ActiveDTP
    from pyftpdlib.servers import FTPServer

    class LabActiveDTP(ActiveDTP):  # type: ignore[misc]
        timeout = FTP_ACTIVE_TIMEOUT_S

    class BounceHandler(FTPHandler):  # type: ignore[misc]
        # Lab only: let PORT name any host and any port, so nmap -b works through us.
        permit_foreign_addresses = True
        permit_privileged_ports = True
        active_dtp = LabActiveDTP
        banner = "twinscan lab FTP relay (bounce permitted)"

        def push_dtp_data(self, *args: Any, **kwargs: Any) -> None:
            # pyftpdlib answers LIST with "150" and waits when no data connection exists (the
            # PORT connect failed); a classic bounce relay refuses at once, as nmap expects.
            connector = self._dtp_connector
            if self.data_channel is None and (connector is None or connector._closed):
                self.respond("425 Can't open data connection.")
                return
            super().push_dtp_data(*args, **kwargs)

        def respond(self, resp: str, logfun: Any = None) -> None:
            # nmap 7.93 reads one recv() per reply: when "125 ..." and "226 ..." arrive in the
            # same read it waits 10 s for a second line that never comes and says filtered
            # (nmap_ftp.cc bounce_scan). A pause before 226 keeps them in separate reads.
            if resp.startswith("226"):
                self.ioloop.call_later(FTP_COMPLETE_DELAY_S, self._late_respond, resp, logfun)
                return
            self._late_respond(resp, logfun)

        def _late_respond(self, resp: str, logfun: Any) -> None:
            if self.connected:
                kwargs = {} if logfun is None else {"logfun": logfun}
                super().respond(resp, **kwargs)

    home = tempfile.mkdtemp(prefix="twinscan-ftp-")
    with open(f"{home}/README", "w") as fh:
        fh.write("twinscan lab\n")
    auth = DummyAuthorizer()
    auth.add_anonymous(home)
    BounceHandler.authorizer = auth
    server = FTPServer((address, port), BounceHandler)
    threading.Thread(target=server.serve_forever, daemon=True, name="ftp").start()


def serve(config: dict[str, Any]) -> None:
    address = str(config["address"])
    # A dual-stack host listens on its IPv6 address too.
    addresses = [address] + ([str(config["address6"])] if config.get("address6") else [])
    sel = selectors.DefaultSelector()
    for addr in addresses:
        family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        tcp = list(config.get("tcp", []))
        if family == socket.AF_INET6 and config.get("ftp"):
            # FTP bounce names IPv4 only (PORT), and pyftpdlib runs one server per process:
            # over IPv6 the relay's port is a plain listener (open, as the truth says).
            tcp.append(int(config["ftp"]))
        for port in tcp:
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((addr, int(port)))
            s.listen(512)
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, ("tcp", None))
        for port, kind in config.get("udp", []):
            u = socket.socket(family, socket.SOCK_DGRAM)
            u.bind((addr, int(port)))
            u.setblocking(False)
            sel.register(u, selectors.EVENT_READ, ("udp", UdpKind(kind)))
    if config.get("ftp"):
        _start_ftp(address, int(config["ftp"]))
    print("ready", flush=True)
    conns: dict[socket.socket, float] = {}
    while True:
        for key, _ in sel.select(timeout=1.0):
            sock: socket.socket = key.fileobj  # type: ignore[assignment]
            what, kind = key.data
            try:
                if what == "tcp":
                    conn, _ = sock.accept()
                    if len(conns) >= _MAX_CONNS:
                        conn.close()
                        continue
                    conn.setblocking(False)
                    conns[conn] = time.monotonic()
                    sel.register(conn, selectors.EVENT_READ, ("conn", None))
                elif what == "conn":
                    # Read until the peer closes (an FTP relay's data transfer must complete).
                    if not sock.recv(65536):
                        _drop(sel, conns, sock)
                else:
                    data, peer = sock.recvfrom(65535)
                    reply = _answer(kind, data)
                    if reply is not None:
                        sock.sendto(reply, peer)
            except OSError:
                if what == "conn":
                    _drop(sel, conns, sock)
                continue
        now = time.monotonic()
        for conn in [c for c, t in conns.items() if now - t > _IDLE_S]:
            _drop(sel, conns, conn)


_MAX_CONNS = 256
_IDLE_S = 10.0


def _drop(
    sel: selectors.BaseSelector, conns: dict[socket.socket, float], conn: socket.socket
) -> None:
    conns.pop(conn, None)
    try:
        sel.unregister(conn)
    except (KeyError, ValueError):
        pass
    conn.close()


def main(argv: list[str]) -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    config = json.loads(argv[0])
    serve(config)
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main(sys.argv[1:]))
