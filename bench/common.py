"""Helpers shared by the measurement processes."""

from __future__ import annotations

import json
import math
import resource
import sqlite3
import statistics
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

JOB_NAME = "noop"
"""Name of the no-op job in every measurement."""


def remove_database(path: Path) -> None:
    """Delete an SQLite file and its WAL and shared-memory files."""
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def split_count(total: int, parts: int) -> list[int]:
    """Split *total* into *parts* counts that differ by at most one."""
    base, extra = divmod(total, parts)
    return [base + (1 if index < extra else 0) for index in range(parts)]


def percentile(values: Sequence[float], fraction: float) -> float:
    """Return the *fraction* quantile of *values*, interpolating linearly."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low = math.floor(position)
    high = math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def latency_summary(seconds: Sequence[float]) -> dict[str, float]:
    """Summarise latencies given in seconds as milliseconds."""
    milliseconds = [value * 1000 for value in seconds]
    return {
        "samples": len(milliseconds),
        "p50_ms": percentile(milliseconds, 0.5),
        "p90_ms": percentile(milliseconds, 0.9),
        "p99_ms": percentile(milliseconds, 0.99),
        "max_ms": max(milliseconds) if milliseconds else math.nan,
        "mean_ms": statistics.fmean(milliseconds) if milliseconds else math.nan,
    }


def peak_rss_mb() -> float:
    """Return the peak resident set size of this process in MiB (Linux units)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def current_rss_mb() -> float:
    """Return the current resident set size of this process in MiB."""
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return math.nan


class Deadline:
    """A bound in seconds on a loop that waits for something to happen."""

    def __init__(self, seconds: float, what: str) -> None:
        self.end = time.monotonic() + seconds
        self.seconds = seconds
        self.what = what

    def check(self) -> None:
        """Raise TimeoutError once the deadline has passed."""
        if time.monotonic() > self.end:
            raise TimeoutError(f"{self.what} did not finish within {self.seconds} s")


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection]:
    """Open a second connection to an SQLite file, for counting rows."""
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None)
    try:
        yield conn
    finally:
        conn.close()


def emit(result: dict[str, Any]) -> None:
    """Print a measurement result as the last line of standard output."""
    print(json.dumps(result), flush=True)
