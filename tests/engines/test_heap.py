"""glibc's mmap threshold, fixed: a large block is mapped on its own and unmapped when freed,
even after a larger one was freed (which raises the threshold unless it is fixed)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

_PROBE = """
import ctypes, sys
from twinscan.engines.heap import unmap_large_frees

class Mallinfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]

mallinfo2 = ctypes.CDLL(None).mallinfo2
mallinfo2.restype = Mallinfo2

def rss_kib():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS"))

if sys.argv[1] == "fixed":
    assert unmap_large_frees()
block = bytearray(8 << 20)  # mapped on its own; freeing it raises a dynamic threshold
del block
mapped = mallinfo2().hblkhd
before = rss_kib()
block = bytearray(b"x") * (1 << 20)  # 1 MiB, every page touched
own_mapping = mallinfo2().hblkhd - mapped >= 1 << 20
del block
print(own_mapping, rss_kib() - before)
"""


def _probe(mode: str) -> tuple[bool, int]:
    # glibc's MALLOC_* variables turn the dynamic threshold off by themselves: Dask's nanny
    # sets MALLOC_TRIM_THRESHOLD_ in os.environ, and earlier tests leave it to later ones
    env = {k: v for k, v in os.environ.items() if not k.startswith("MALLOC_")}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, mode], capture_output=True, text=True, check=True, env=env
    )
    mapped, growth = out.stdout.split()
    return mapped == "True", int(growth)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_a_large_block_is_mapped_on_its_own_once_the_threshold_is_fixed() -> None:
    mapped, growth_kib = _probe("fixed")
    assert mapped and growth_kib < 512  # unmapped when freed: nothing stays resident
    # the condition it fixes: after the 8 MiB free, glibc serves 1 MiB from its heap
    assert not _probe("default")[0]
