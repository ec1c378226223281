"""The ground-truth lab: a declarative spec, its network-namespace realization and its truth table.

* ``twinscan.lab.spec``: parse and validate the TOML spec (``load_spec``, ``parse_spec``).
* ``twinscan.lab.truth``: the pure truth function (``truth_frame``).
* ``twinscan.lab.netns``: ``up``, ``down``, ``status``, ``exec_in_scanner`` (root only).
* ``twinscan.lab.services``: the per-host service process run inside each namespace.
"""

from __future__ import annotations

from twinscan.lab.spec import LabSpec, SpecError, default_spec_path, load_spec, parse_spec

__all__ = ["LabSpec", "SpecError", "default_spec_path", "load_spec", "parse_spec"]
