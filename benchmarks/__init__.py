"""twinscan benchmarks: side-by-side speed against nmap (run with `python -m benchmarks`)."""
