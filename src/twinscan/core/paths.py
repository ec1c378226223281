"""Where twinscan keeps state on disk that more than one part reads.

The lab writes its state files (``/run/twinscan/P.json``) and the target guard reads them
(``twinscan.request.safety.lab_namespaces``): the location lives here so that the guard, on
every lab scan's start-up path, does not import the lab package to learn it.
"""

from __future__ import annotations

import os
from pathlib import Path

#: environment variable that moves the lab state directory (tests, unprivileged runs)
LAB_STATE_DIR_ENV = "TWINSCAN_LAB_STATE_DIR"


def lab_state_dir() -> Path:
    """The directory holding one state file per running lab."""
    return Path(os.environ.get(LAB_STATE_DIR_ENV, "/run/twinscan"))
