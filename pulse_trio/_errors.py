"""Exceptions raised by pulse-trio.

Every error derives from :class:`PulseError` and, where one fits, from the
builtin exception that describes it, so ``except LookupError`` works for an
unknown job id.
"""

from __future__ import annotations


class PulseError(Exception):
    """Base class of every exception class of pulse-trio."""


class JobNotFound(PulseError, LookupError):
    """No job with the requested id exists in the database."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"no job with id {job_id!r} exists in this database; check the id "
            "returned by enqueue(), or whether the job was deleted or purged"
        )
        self.job_id = job_id


class JobNotDead(PulseError, ValueError):
    """A job that is not dead was passed where a dead job is required."""

    def __init__(self, job_id: str, status: str) -> None:
        super().__init__(
            f"job {job_id!r} is {status}, not dead; only dead jobs can be "
            "retried (see dead_jobs())"
        )
        self.job_id = job_id
        self.status = status


class JobRunning(PulseError, RuntimeError):
    """A job that is running was passed where a job at rest is required."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            f"job {job_id!r} is running and cannot be deleted now; delete it "
            "once the run ends (see status()), or stop the worker that runs it"
        )
        self.job_id = job_id


class InvalidPayload(PulseError, TypeError):
    """A payload cannot be stored as JSON or is larger than the limit."""


class InvalidJobName(PulseError, ValueError):
    """A job name is empty or not a string."""


class HandlerError(PulseError, ValueError):
    """A handler cannot be registered as given."""


class NoRetry(PulseError):
    """Raised by a handler to fail its job for good.

    The job goes to the dead-letter queue at once, whatever retries it has
    left, with this exception as its error. Use it for a failure that a
    retry cannot fix, such as a declined card or a record that no longer
    exists. ``raise NoRetry("card declined") from exc`` keeps the original
    error in the stored traceback. An exception group that contains a
    ``NoRetry``, as a nursery in the handler raises it, counts too. Any
    other exception is retried as the job's config sets.
    """


def is_no_retry(exc: BaseException | None) -> bool:
    """Return whether *exc* is a :exc:`NoRetry`, or an exception group that
    contains one, as a handler's nursery raises it."""
    if isinstance(exc, BaseExceptionGroup):
        return exc.split(NoRetry)[0] is not None
    return isinstance(exc, NoRetry)


class QueueClosed(PulseError, RuntimeError):
    """The queue is shutting down or was shut down, so it takes no new work."""


class DatabaseError(PulseError):
    """The database cannot be opened or used."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer version of pulse-trio."""
