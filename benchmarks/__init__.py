"""Benchmarks of every implementation, side by side (pytest-benchmark), and their report."""
