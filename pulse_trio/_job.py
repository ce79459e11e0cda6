"""Job statuses and the :class:`Job` snapshot."""

from __future__ import annotations

import enum
import functools
import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs

from ._config import JobConfig, JobPriority

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class JobStatus(enum.Enum):
    """Stage of a job in its life.

    The database stores ``pending``, ``scheduled``, ``retrying``,
    ``running``, ``completed`` and ``dead``. A scheduled or retrying job
    whose due time has passed is reported as :attr:`PENDING`, because it
    is then waiting for a worker and nothing else.
    """

    PENDING = "pending"
    """Due, waiting for a worker."""
    SCHEDULED = "scheduled"
    """Not yet due."""
    RUNNING = "running"
    """A worker is running its handler."""
    RETRYING = "retrying"
    """A run failed; the job waits for its backoff to pass."""
    COMPLETED = "completed"
    """The handler returned."""
    DEAD = "dead"
    """Every allowed run failed; the job waits in the dead-letter queue."""


WAITING_STATUSES = (JobStatus.PENDING, JobStatus.SCHEDULED, JobStatus.RETRYING)
FINISHED_STATUSES = (JobStatus.COMPLETED, JobStatus.DEAD)


def from_microseconds(value: int) -> datetime:
    """Convert stored UTC microseconds since the epoch to an aware datetime."""
    return _EPOCH + timedelta(microseconds=value)


def to_epoch_microseconds(moment: datetime) -> int:
    """Convert an aware datetime to UTC microseconds since the epoch."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


@attrs.frozen
class AttemptError:
    """The error of one failed run of a job."""

    attempt: int
    """Number of the run that failed, counting from 1."""
    error: str
    """Exception type and message, such as ``"ValueError: bad input"``."""
    traceback: str
    """The formatted traceback, empty when the run timed out."""
    failed_at: datetime
    """When the run failed (UTC)."""


@attrs.frozen
class Job:
    """A snapshot of one job, read from the database.

    It does not change when the job does: call :meth:`Pulse.status` again
    for a fresh one.
    """

    id: str
    """Unique id returned by :meth:`Pulse.enqueue`."""
    name: str
    """Name of the handler that runs the job."""
    payload: Any
    """The decoded JSON payload passed to the handler."""
    status: JobStatus
    """Current status; see :class:`JobStatus`."""
    priority: JobPriority
    """Order among due jobs."""
    attempts: int
    """Runs started so far, including one in progress."""
    max_retries: int
    """Retries allowed after the first failed run."""
    last_error: str | None
    """Error of the most recent failed run, or ``None``."""
    created_at: datetime
    """When the job was enqueued (UTC)."""
    run_at: datetime
    """When the job is due, or was due for its last run (UTC). For a dead
    job, when it died."""
    started_at: datetime | None
    """When the current or last run started (UTC)."""
    finished_at: datetime | None
    """When the job completed or died (UTC)."""
    errors: tuple[AttemptError, ...]
    """Errors of the last 20 failed runs, oldest first."""
    config: JobConfig
    """The configuration the job was enqueued with."""
    owner: str | None = None
    """While the job runs, the id of the queue that runs it, as listed in
    :attr:`QueueSummary.queues <pulse_trio.QueueSummary.queues>`."""


def _optional_time(value: int | None) -> datetime | None:
    return None if value is None else from_microseconds(value)


def _decode_errors(text: str) -> tuple[AttemptError, ...]:
    return tuple(
        AttemptError(
            attempt=item["attempt"],
            error=item["error"],
            traceback=item["traceback"],
            failed_at=from_microseconds(item["failed_at"]),
        )
        for item in json.loads(text)
    )


def to_status(value: object) -> JobStatus:
    """Convert a :class:`JobStatus` or its value, such as ``"dead"``."""
    if isinstance(value, JobStatus):
        return value
    if isinstance(value, str):
        try:
            return JobStatus(value.lower())
        except ValueError:
            pass
    names = ", ".join(status.value for status in JobStatus)
    raise ValueError(f"invalid job status {value!r}; use a JobStatus or one of {names}")


def reported_status(stored: str, run_at: int, now: int) -> JobStatus:
    """Return the status to report for a stored status at time *now*."""
    status = JobStatus(stored)
    if status in WAITING_STATUSES:
        return JobStatus.PENDING if run_at <= now else status
    return status


def config_from_row(row: Mapping[str, Any]) -> JobConfig:
    """Rebuild the :class:`JobConfig` stored in a row of the jobs table."""
    return _config_from_columns(
        row["priority"],
        row["max_retries"],
        row["retry_delay_us"],
        row["max_retry_delay_us"],
        row["timeout_us"],
    )


# Most jobs share a few configs, and building one runs every converter.
@functools.lru_cache(maxsize=256)
def _config_from_columns(
    priority: int,
    max_retries: int,
    retry_delay_us: int,
    max_retry_delay_us: int,
    timeout_us: int | None,
) -> JobConfig:
    return JobConfig(
        priority=priority,
        max_retries=max_retries,
        retry_delay=timedelta(microseconds=retry_delay_us),
        max_retry_delay=timedelta(microseconds=max_retry_delay_us),
        timeout=None if timeout_us is None else timedelta(microseconds=timeout_us),
    )


def job_from_row(row: Mapping[str, Any], now: int) -> Job:
    """Build a :class:`Job` from a row of the jobs table."""
    config = config_from_row(row)
    return Job(
        id=row["id"],
        name=row["name"],
        payload=json.loads(row["payload"]),
        status=reported_status(row["status"], row["run_at"], now),
        priority=config.priority,
        attempts=row["attempts"],
        max_retries=row["max_retries"],
        last_error=row["last_error"],
        created_at=from_microseconds(row["created_at"]),
        run_at=from_microseconds(row["run_at"]),
        started_at=_optional_time(row["started_at"]),
        finished_at=_optional_time(row["finished_at"]),
        errors=_decode_errors(row["errors"]),
        config=config,
        owner=row["owner"],
    )
