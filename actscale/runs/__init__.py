"""Runs: the API (train, load), bundles and the store, jobs, sweeps and where runs execute (in-process or on Ray)."""
