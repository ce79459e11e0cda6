"""Job priorities and per-job configuration."""

from __future__ import annotations

import enum
import math
from datetime import timedelta
from typing import Any

import attrs

MICROSECONDS_PER_SECOND = 1_000_000

MAX_DURATION = timedelta(days=366 * 1000)
"""Maximum duration accepted, about 1,000 years.

Due times are stored as INTEGER microseconds and read back as datetimes,
which end at the year 9999, so a delay or backoff added to the current
time must stay well inside that range.
"""

MAX_RETRIES_LIMIT = 2**62
"""Largest max_retries accepted, because it and the attempt count are
stored as signed 64-bit SQLite INTEGERs."""


class JobPriority(enum.IntEnum):
    """Priority of a job: among due jobs, a higher priority runs first.

    Members compare as integers, so ``JobPriority.CRITICAL > JobPriority.HIGH``.
    """

    LOW = 0
    NORMAL = 1
    HIGH = 2
    CRITICAL = 3


def to_priority(value: object) -> JobPriority:
    """Convert a :class:`JobPriority` or its integer value, rejecting others."""
    if isinstance(value, JobPriority):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        try:
            return JobPriority(value)
        except ValueError:
            pass
    if isinstance(value, str) and value.upper() in JobPriority.__members__:
        return JobPriority[value.upper()]
    names = ", ".join(f"JobPriority.{p.name} ({p.value})" for p in JobPriority)
    raise ValueError(f"invalid priority {value!r}; use one of {names}")


def to_duration(value: object, *, name: str) -> timedelta:
    """Convert a :class:`~datetime.timedelta` or a number of seconds.

    Raises:
        TypeError: The value is neither a timedelta nor a number.
        ValueError: The value is negative, NaN, infinite or over
            :data:`MAX_DURATION`.
    """
    if isinstance(value, timedelta):
        seconds = value.total_seconds()
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            seconds = float(value)
        except OverflowError:
            # Too big for a float, and maybe too big to print.
            sign = "negative" if value < 0 else "too long"
            raise ValueError(
                f"{name} is {sign}: an int of {int(value).bit_length()} bits; the "
                f"maximum is {MAX_DURATION.days} days"
            ) from None
    else:
        raise TypeError(
            f"{name} must be a timedelta or a number of seconds, "
            f"not {type(value).__name__} ({value!r})"
        )
    if math.isnan(seconds) or math.isinf(seconds):
        raise ValueError(f"{name} must be a finite duration, not {value!r}")
    if seconds < 0:
        raise ValueError(f"{name} must not be negative, got {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ValueError(
            f"{name} is too long: {value!r}; the maximum is {MAX_DURATION.days} days"
        )
    if isinstance(value, timedelta):
        return value
    return timedelta(seconds=seconds)


def to_microseconds(duration: timedelta) -> int:
    """Return a duration as whole microseconds."""
    return duration // timedelta(microseconds=1)


def _to_max_retries(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(
            f"max_retries must be an int, not {type(value).__name__} ({value!r})"
        )
    if value < 0:
        raise ValueError(f"max_retries must be 0 or more, got {value}")
    if value > MAX_RETRIES_LIMIT:
        raise ValueError(
            f"max_retries must be at most {MAX_RETRIES_LIMIT}, got {value}"
        )
    return value


def _to_retry_delay(value: object) -> timedelta:
    return to_duration(value, name="retry_delay")


def _to_max_retry_delay(value: object) -> timedelta:
    return to_duration(value, name="max_retry_delay")


def _to_timeout(value: object) -> timedelta | None:
    if value is None:
        return None
    timeout = to_duration(value, name="timeout")
    if timeout < timedelta(microseconds=1):
        raise ValueError(
            f"timeout must be at least 1 microsecond, got {value!r}; pass None "
            "for no time limit"
        )
    return timeout


@attrs.frozen
class JobConfig:
    """Run settings of a job: its priority, retries, backoff and time limit.

    Durations accept a :class:`~datetime.timedelta` or a number of seconds
    and are stored as timedeltas.
    """

    priority: JobPriority = attrs.field(
        default=JobPriority.NORMAL, converter=to_priority
    )
    """Order among due jobs; higher runs first."""

    max_retries: int = attrs.field(default=3, converter=_to_max_retries)
    """Retries after the first failed run, so a job runs at most
    ``max_retries + 1`` times."""

    retry_delay: timedelta = attrs.field(
        default=timedelta(seconds=5), converter=_to_retry_delay
    )
    """Delay before the first retry; it doubles after each further failure."""

    max_retry_delay: timedelta = attrs.field(
        default=timedelta(hours=1), converter=_to_max_retry_delay
    )
    """Upper bound on the delay between two runs."""

    timeout: timedelta | None = attrs.field(
        default=timedelta(seconds=300), converter=_to_timeout
    )
    """Time limit of one run, or ``None`` for no limit."""

    @classmethod
    def critical(cls, **changes: Any) -> JobConfig:
        """Return a config with critical priority and 5 retries."""
        return cls(**{"priority": JobPriority.CRITICAL, "max_retries": 5, **changes})

    @classmethod
    def no_retry(cls, **changes: Any) -> JobConfig:
        """Return a config whose job runs once and is dead if that run fails."""
        return cls(**{"max_retries": 0, **changes})

    def backoff(self, failed_runs: int) -> timedelta:
        """Return the delay before the run that follows failed run *failed_runs*.

        The delay is ``retry_delay * 2 ** (failed_runs - 1)``, capped at
        ``max_retry_delay``.
        """
        return timedelta(microseconds=self.backoff_us(failed_runs))

    def backoff_us(self, failed_runs: int) -> int:
        """Return :meth:`backoff` in microseconds."""
        base = to_microseconds(self.retry_delay)
        cap = to_microseconds(self.max_retry_delay)
        shift = max(failed_runs - 1, 0)
        # A shift past the cap's bit length exceeds the cap for any base
        # of at least 1 µs, so skip computing a huge integer.
        if base == 0:
            return 0
        if shift >= cap.bit_length() + 1:
            return cap
        return min(base << shift, cap)
