"""Helpers for tests and benchmarks: synthetic data that needs no download."""
