"""Benign test data: generated images that stand in for known material in tests and benchmarks."""
