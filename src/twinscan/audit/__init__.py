"""``twinscan audit``: is what a host exposes what the policy intends, and if not, what to do.

Pure core (no sockets, processes or nmap here; the glue in ``twinscan.audit.run`` scans,
asks psutil for owners and runs nmap -sV):

- ``policy``: the policy file (TOML ``[[rule]]`` tables) parsed and validated, errors naming
  the file, the line and the problem;
- ``findings``: the table from (port state, the port's role in the policy) to a finding, the
  per-cell audit and the baseline comparison;
- ``advice``: what a person can do about each finding (stop the owner, an nftables line, patch);
- ``render``: the terminal report (grouped by host, worst first), CSV, JSON and HTML.
"""
