"""Benchmarks: each bench/<name>.py runs our path and a peer's on the same input in one run."""
