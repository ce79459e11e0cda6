"""Checks and conversions of the arguments that :class:`Pulse` takes."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta

from ._config import JobConfig, to_duration, to_microseconds
from ._job import to_epoch_microseconds

MIN_DUE = to_epoch_microseconds(datetime(1, 1, 2, tzinfo=UTC))
MAX_DUE = to_epoch_microseconds(datetime(9999, 12, 30, tzinfo=UTC))


def check_due_range(due: int, description: str) -> None:
    if not MIN_DUE <= due <= MAX_DUE:
        raise ValueError(
            f"the due time from {description} is outside the supported range; "
            "pass a time between the years 1 and 9999 in UTC"
        )


class DueTime:
    """A due time given as an instant or as a delay from enqueue."""

    def __init__(
        self, at_us: int | None, delay_us: int | None, description: str
    ) -> None:
        self.at_us = at_us
        self.delay_us = delay_us
        self.description = description

    def resolve(self, now: int) -> int:
        if self.at_us is not None:
            return self.at_us
        assert self.delay_us is not None
        return now + self.delay_us


def due_time(run_at: datetime | None, delay: timedelta | float | None) -> DueTime:
    if (run_at is None) == (delay is None):
        raise ValueError("schedule() needs exactly one of run_at (a datetime) or delay")
    if run_at is None:
        duration = to_duration(delay, name="delay")
        return DueTime(None, to_microseconds(duration), f"delay={duration}")
    if not isinstance(run_at, datetime):
        raise TypeError(
            f"run_at must be an aware datetime, not {type(run_at).__name__} "
            f"({run_at!r}); use delay= for a duration"
        )
    if run_at.tzinfo is None or run_at.utcoffset() is None:
        raise ValueError(
            f"run_at {run_at.isoformat()} is a naive datetime; pass an aware one, "
            "such as datetime.now(timezone.utc) + timedelta(hours=1)"
        )
    return DueTime(to_epoch_microseconds(run_at), None, f"run_at={run_at.isoformat()}")


@functools.lru_cache(maxsize=256)
def config_columns(config: JobConfig) -> tuple[int, int, int, int, int | None]:
    """Return the stored columns of *config*, in the order of INSERT_JOB:
    priority, max_retries, retry_delay_us, max_retry_delay_us, timeout_us."""
    timeout = config.timeout
    return (
        int(config.priority),
        config.max_retries,
        to_microseconds(config.retry_delay),
        to_microseconds(config.max_retry_delay),
        None if timeout is None else to_microseconds(timeout),
    )


DEFAULT_CONFIG = JobConfig()


def check_config(config: object) -> JobConfig:
    if config is None:
        return DEFAULT_CONFIG
    if not isinstance(config, JobConfig):
        raise TypeError(
            f"config must be a JobConfig, not {type(config).__name__} ({config!r})"
        )
    return config


def check_retention(keep: timedelta | float | None) -> timedelta | None:
    if keep is None:
        return None
    return to_duration(keep, name="keep_completed")


MAX_WORKERS = 10_000
"""Upper bound on workers: each is a task with its own channel."""


def check_workers(workers: object) -> int:
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    if workers > MAX_WORKERS:
        raise ValueError(
            f"workers must be at most {MAX_WORKERS}, got {workers}; a queue "
            "with that many jobs at once wants several processes"
        )
    return workers


def check_payload_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"max_payload_bytes must be a positive int, got {limit!r}")
    return limit
