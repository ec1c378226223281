"""glibc's mmap threshold, fixed: a large block freed leaves no resident pages behind."""

from __future__ import annotations

import subprocess
import sys

import pytest

_PROBE = """
import sys
from twinscan.engines.heap import unmap_large_frees

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

if sys.argv[1] == "fixed":
    assert unmap_large_frees()
block = bytearray(4 << 20)  # an mmap'd block; freeing it raises glibc's threshold
del block
before = rss_kib()
block = bytearray(4 << 20)  # the same size again: from the heap unless the threshold is fixed
del block
print(rss_kib() - before)
"""


def _growth_kib(mode: str) -> int:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True
    )
    return int(out.stdout)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_freed_large_block_leaves_no_resident_pages_once_the_threshold_is_fixed() -> None:
    assert _growth_kib("fixed") < 1024
    # the condition it fixes: without it, the second block's 4 MiB stay resident
    assert _growth_kib("default") >= 3 * 1024
