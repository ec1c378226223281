"""The vocabulary every other folder speaks: enums, nmap's verdict rules as data, the
error tree, timing templates, the one results schema, progress and wording.

Pure: no sockets, processes, scapy or nmap (enforced by ruff TID251, see .ruff.toml here).
"""
