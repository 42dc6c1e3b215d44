"""Benchmarks: Master Control against supervisord (see bench/RESULTS.md)."""
