"""twinscan: run the same port scan through a native engine and through nmap, then diff the verdicts."""

__version__ = "0.1.0"
