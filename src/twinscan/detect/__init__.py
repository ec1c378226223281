"""Port-scan detection in packet captures (``twinscan detect``).

The pipeline is pure apart from reading the file (and, in ``live``, the raw capture socket):
``capture`` parses pcap/pcapng, ``fields`` extracts headers with numpy, ``contacts`` turns
packets into conversations with outcomes, the detectors (``sfportscan``, ``zeek``, ``trw``,
``scanlogd``) are small state machines fed those contacts, ``fingerprints`` names the tool
and ``runner`` ties it together.
"""

from __future__ import annotations

from twinscan.detect.runner import DETECTORS, ROW_COLUMNS, Report, Row, detect_bytes, detect_file

__all__ = ["DETECTORS", "ROW_COLUMNS", "Report", "Row", "detect_bytes", "detect_file"]
