"""The benchmark harness behind ``twinscan bench`` and ``python -m benchmarks``.

* ``plan``: pure — engines, workloads, the workload catalog, argv per engine, the A B A B
  run order.
* ``measure``: runs one child process and measures wall time, CPU time, peak RSS of its
  process tree and the packets it sent (the only module here that starts processes).
* ``accuracy``: pure — truth cells for a workload and an engine's verdicts scored against them.
* ``report``: pure — per-run rows to medians, spreads, ratios to nmap; the markdown table and the
  README block; the PNG plot (matplotlib, imported lazily).
* ``harness``: brings up the benchmark lab (``fixtures/labs/bench.toml``) under its own prefix,
  runs the schedule inside its scanner namespace, writes ``runs.csv``, ``summary.csv``,
  ``summary.md`` and ``bench.png``, and always tears the lab down.

The harness lives in the installed package so ``twinscan bench`` works from any directory;
``benchmarks/`` at the repo root holds only the ``python -m benchmarks`` entry and the recorded
results (``benchmarks/results/``).
"""
