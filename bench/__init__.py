"""Benchmarks of pulse-trio against other job queues; run ``python -m bench``."""
