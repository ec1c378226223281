"""Facts about this machine: which process owns a local port (psutil, read-only)."""
