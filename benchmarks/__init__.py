"""Measurement scripts: `make bench` (speed figures) and the experiments that chose the defaults.

Run from the repository root (`python -m benchmarks.bench`); not part of the installed package."""
