"""Benchmarks and long runs; not part of the test suite."""
