"""Checks and conversions of the arguments that :class:`Pulse` takes."""

from __future__ import annotations

import functools
import json
import os
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from ._config import JobConfig, to_duration, to_microseconds
from ._errors import InvalidPayload
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


@attrs.frozen
class QueueOptions:
    """The checked options of a :class:`Pulse`."""

    workers: int
    max_payload_bytes: int
    lease: timedelta
    keep_completed: timedelta | None

    @classmethod
    def check(
        cls,
        workers: int | None,
        max_payload_bytes: int,
        lease: timedelta | float,
        keep_completed: timedelta | float | None,
    ) -> QueueOptions:
        lease_duration = to_duration(lease, name="lease")
        if not lease_duration:
            raise ValueError(f"lease must be positive, got {lease!r}")
        return cls(
            workers=check_workers(
                (os.cpu_count() or 1) if workers is None else workers
            ),
            max_payload_bytes=check_payload_limit(max_payload_bytes),
            lease=lease_duration,
            keep_completed=check_retention(keep_completed),
        )


def check_flag(value: object, *, name: str) -> bool:
    """Return *value* if it is a bool, else raise TypeError naming *name*."""
    if not isinstance(value, bool):
        raise TypeError(f"{name} must be True or False, not {value!r}")
    return value


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


MAX_PAYLOAD_LIMIT = 512 * 1024 * 1024
"""Largest value of max_payload_bytes: 512 MiB, well under the 1,000,000,000
bytes that SQLite stores in one value by default."""


def check_payload_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
        raise ValueError(f"max_payload_bytes must be a positive int, got {limit!r}")
    if limit > MAX_PAYLOAD_LIMIT:
        raise ValueError(
            f"max_payload_bytes must be at most {MAX_PAYLOAD_LIMIT} (512 MiB), got "
            f"{limit}; store large data elsewhere and pass a reference"
        )
    return limit


MAX_PAYLOAD_DEPTH = 100
"""Deepest nesting of lists and dicts accepted in a payload.

Decoding a deeply nested payload recurses once per level, so a payload
much deeper than this could fail to decode in a handler or a status read
called from deep in a program's stack."""

# One encoder for every payload: json.dumps() with options builds a new one
# per call.
_ENCODER = json.JSONEncoder(allow_nan=False, ensure_ascii=False, separators=(",", ":"))


def encode_payload(name: str, payload: Any, limit: int) -> str:
    """Return *payload* as JSON text, checked against the payload rules.

    Raises:
        InvalidPayload: JSON cannot encode it, it nests too deep, or its
            UTF-8 encoding is over *limit* bytes.
    """
    try:
        text = _ENCODER.encode(payload)
    except (TypeError, ValueError, RecursionError) as exc:
        # UnicodeEncodeError is a ValueError: a str with a lone surrogate.
        reason = str(exc)
        if reason.startswith("Out of range float"):
            # json names neither the value nor its type here.
            reason += " (the payload contains a NaN or infinite float)"
        raise InvalidPayload(
            f"payload of job {name!r} cannot be stored as JSON: {reason}. Pass "
            "dicts with str keys, lists, str, int, finite float, bool or None; "
            "convert other values (datetime, set, bytes, objects) first"
        ) from exc
    # Counting brackets is fast; it may count some inside strings, and then
    # the exact walk decides.
    if text.count("[") + text.count("{") > MAX_PAYLOAD_DEPTH:
        _check_depth(name, payload)
    try:
        size = len(text.encode())
    except UnicodeEncodeError as exc:
        raise InvalidPayload(
            f"payload of job {name!r} contains a str that is not valid "
            f"Unicode ({exc.reason} at position {exc.start}); remove lone "
            "surrogates or pass the data as a list of ints"
        ) from exc
    if size > limit:
        raise InvalidPayload(
            f"payload of job {name!r} is {size} bytes encoded, over the limit "
            f"of {limit}; store large data elsewhere and pass a reference, or "
            "raise max_payload_bytes"
        )
    return text


def _check_depth(name: str, payload: Any) -> None:
    level: list[Any] = [payload]
    for _ in range(MAX_PAYLOAD_DEPTH + 1):
        level = [
            child
            for value in level
            if isinstance(value, (dict, list))
            for child in (value.values() if isinstance(value, dict) else value)
        ]
        if not level:
            return
    raise InvalidPayload(
        f"payload of job {name!r} nests lists and dicts more than "
        f"{MAX_PAYLOAD_DEPTH} levels deep; flatten it"
    )
