"""Every reader and writer of results: CSV, JSON lines, nmap XML, nmap's normal and
grepable text, the text report, output-path checks.

No sockets, processes, scapy or nmap (ruff TID251).
"""
