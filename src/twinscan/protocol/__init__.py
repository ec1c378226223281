"""The sans-IO state machines: the raw scan session, the connect plan, the FTP bounce
dialogue, pacing, the wire layout, probe building and reply matching, UDP payloads.

Clock passed in, bytes in and out: no sockets, processes, scapy or nmap (ruff TID251).
"""
