"""The bulk session's replacements for ``np.unique`` (which imports numpy.ma when first
called) give what ``np.unique`` gives."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from twinscan.protocol.bulk_session import _distinct, _first_of_each

_values = st.lists(st.integers(-5, 40), max_size=60).map(lambda v: np.array(v, dtype=np.int64))


@given(_values)
def test_distinct_is_np_unique(values: np.ndarray) -> None:
    assert _distinct(values).tolist() == np.unique(values).tolist()


@given(_values)
def test_first_of_each_is_np_unique_return_index(values: np.ndarray) -> None:
    assert _first_of_each(values).tolist() == np.unique(values, return_index=True)[1].tolist()


def test_a_batch_of_replies_does_not_import_numpy_ma() -> None:
    """Every reply batch went through np.unique, and a -p- scan paid numpy.ma's import."""
    code = """
import sys
from twinscan.core.timing import resolve
from twinscan.core.vocab import Technique
from twinscan.protocol.bulk_session import BulkTcpSession
s = BulkTcpSession(Technique.SYN, ["h"], range(1, 5000), resolve(4), randomize=False)
host, port, tryno = s.due_arrays(0.0)
n = len(port)
s.receive_arrays(host, port, [-1] * n, [0x14] * n, [0] * n, [64] * n, now=0.001)
assert s.finished == n > 0, (s.finished, n)
print("numpy.ma" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
