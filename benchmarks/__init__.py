"""Benchmarks comparing safethreads with the standard library in the same run."""
