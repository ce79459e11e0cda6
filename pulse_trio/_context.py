"""The running job, as seen from inside its handler."""

from __future__ import annotations

import contextvars
from datetime import datetime

import attrs

from ._errors import PulseError


@attrs.frozen
class JobContext:
    """The job that the current handler runs."""

    id: str
    """Id of the job."""
    name: str
    """Name the job was enqueued under."""
    attempt: int
    """Number of this run, counting from 1."""
    max_retries: int
    """Retries allowed after the first failed run."""
    started_at: datetime
    """When this run started (UTC)."""


_current: contextvars.ContextVar[JobContext] = contextvars.ContextVar("pulse_trio_job")


def current_job() -> JobContext:
    """Return the job that the calling handler runs.

    Works in async handlers and in plain functions run in a worker thread,
    and in any task or thread that they start, because trio copies the
    context into both.

    Raises:
        PulseError: Called outside a job handler.
    """
    try:
        return _current.get()
    except LookupError:
        raise PulseError(
            "current_job() was called outside a job handler; call it from a "
            "function registered with Pulse.handle() while it runs"
        ) from None


def current_job_or_none() -> JobContext | None:
    """Return the job that the calling handler runs, or ``None``."""
    return _current.get(None)


def enter_job(context: JobContext) -> contextvars.Token[JobContext]:
    return _current.set(context)


def leave_job(token: contextvars.Token[JobContext]) -> None:
    _current.reset(token)
