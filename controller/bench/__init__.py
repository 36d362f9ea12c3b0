"""Benchmarks: each writes results/bench/<name>.json and prints a table."""
