"""``python -m benchmarks [--quick] ...``: the same as ``twinscan bench [--quick] ...``.

The harness itself lives in the installed package (``twinscan.bench``); this directory holds
the entry point and the recorded results (``benchmarks/results/``).
"""

from __future__ import annotations

import sys

from twinscan.cli import app

if __name__ == "__main__":
    app(["bench", *sys.argv[1:]], prog_name="python -m benchmarks")
