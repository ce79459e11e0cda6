"""Reporting after a batch commits: log records, events and wake-ups.

Nothing here runs before the change it reports is on disk, so a log line
or event that reports a completed job is never followed by a rerun of the
same attempt.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import attrs
from trio_util import AsyncValue

from ._clock import WallClock
from ._errors import is_no_retry
from ._events import EventKind, JobEvent, Listeners
from ._job import from_microseconds
from ._messages import (
    ClaimedJob,
    Complete,
    Delete,
    DeleteMatching,
    Fail,
    Insert,
    Message,
    RecoverOrphans,
    Release,
    RetryAllDead,
    RetryDead,
)

logger = logging.getLogger("pulse_trio.jobs")


def _extra(job_id: str, name: str) -> dict[str, str]:
    return {"job_id": job_id, "job_name": name}


@attrs.define(eq=False)
class Reporter:
    """Logs committed changes, sends events and wakes waiting tasks.

    ``wakeups`` wakes the scheduler when the next due time of a job may
    have moved closer; ``changes`` wakes :meth:`Pulse.wait` and
    :meth:`Pulse.drain` after each committed batch and each worker that
    becomes idle.
    """

    clock: WallClock
    listeners: Listeners
    wakeups: AsyncValue[int] = attrs.field(factory=lambda: AsyncValue(0))
    changes: AsyncValue[int] = attrs.field(factory=lambda: AsyncValue(0))
    completed: int = 0
    failed: int = 0

    def wake(self) -> None:
        self.wakeups.value += 1

    def report(self, message: Message, result: Any) -> None:
        """Report the committed outcome of one request."""
        match message:
            case Insert(name=name, rows=rows, due_now=due_now):
                for row in rows if logger.isEnabledFor(logging.DEBUG) else ():
                    logger.debug(
                        "job %s (%s): enqueued",
                        row[0],
                        name,
                        extra=_extra(row[0], name),
                    )
                if not due_now:
                    self.wake()  # the next due time may be sooner now
            case Complete():
                self._completed(message, result)
            case Fail():
                self._failed(message, result)
                self.wake()
            case Release(job=job) if result:
                self._cancelled(job)
            case RetryDead():
                self._retried([result])
            case Delete(job_id=job_id):
                self._deleted(job_id, *result)
            case DeleteMatching():
                for deleted in result:
                    self._deleted(*deleted)
            case RetryAllDead():
                self._retried(result)
            case RecoverOrphans():
                self._recovered(result)

    def batch_committed(self) -> None:
        """Wake the tasks that wait for a change, once per committed batch."""
        self.changes.value += 1

    def started(self, job: ClaimedJob) -> None:
        """Report that a worker started a run of *job*."""
        # Checked first, because building the record's extra fields costs
        # more than the check, on every run.
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug(
                "job %s (%s): attempt %d started",
                job.id,
                job.name,
                job.attempt,
                extra=_extra(job.id, job.name),
            )
        self._emit(EventKind.STARTED, job.id, job.name, job.attempt)

    def _now(self) -> datetime:
        return from_microseconds(self.clock.now_us())

    def _emit(
        self, kind: EventKind, job_id: str, name: str, attempt: int, **fields: Any
    ) -> None:
        if not self.listeners:
            return
        self.listeners.emit(
            JobEvent(
                kind=kind,
                job_id=job_id,
                name=name,
                attempt=attempt,
                at=self._now(),
                **fields,
            )
        )

    def _completed(self, message: Complete, recorded: bool) -> None:
        job = message.job
        if not recorded:
            self._stale(job, "completion")
            return
        self.completed += 1
        if logger.isEnabledFor(logging.INFO):
            logger.info(
                "job %s (%s): completed in %.3f s on attempt %d",
                job.id,
                job.name,
                message.duration,
                job.attempt,
                extra=_extra(job.id, job.name),
            )
        self._emit(
            EventKind.COMPLETED,
            job.id,
            job.name,
            job.attempt,
            duration=message.duration,
        )

    def _failed(self, message: Fail, outcome: Any) -> None:
        job = message.job
        if outcome is None:
            self._stale(job, "failure", message.error)
            return
        self.failed += 1
        exc = message.exception
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        if outcome.status == "dead":
            reason = (
                "the handler raised NoRetry" if is_no_retry(exc) else "no retries left"
            )
            logger.error(
                "job %s (%s): attempt %d failed, %s; job is dead: %s",
                job.id,
                job.name,
                job.attempt,
                reason,
                message.error,
                exc_info=exc_info,
                extra=_extra(job.id, job.name),
            )
            kind, next_run_at = EventKind.DEAD, None
        else:
            next_run_at = from_microseconds(outcome.run_at)
            logger.warning(
                "job %s (%s): attempt %d failed; retry at %s: %s",
                job.id,
                job.name,
                job.attempt,
                next_run_at.isoformat(),
                message.error,
                exc_info=exc_info,
                extra=_extra(job.id, job.name),
            )
            kind = EventKind.FAILED
        self._emit(
            kind,
            job.id,
            job.name,
            job.attempt,
            duration=message.duration,
            error=message.error,
            next_run_at=next_run_at,
        )

    def _cancelled(self, job: ClaimedJob) -> None:
        logger.info(
            "job %s (%s): attempt %d cancelled by shutdown; pending again, "
            "attempt not counted",
            job.id,
            job.name,
            job.attempt,
            extra=_extra(job.id, job.name),
        )
        self._emit(EventKind.CANCELLED, job.id, job.name, job.attempt)

    def _retried(self, jobs: list[tuple[str, str]]) -> None:
        for job_id, name in jobs:
            logger.info(
                "job %s (%s): dead job retried; pending again",
                job_id,
                name,
                extra=_extra(job_id, name),
            )
            self._emit(EventKind.RETRIED, job_id, name, 0)

    def _deleted(self, job_id: str, name: str, status: str) -> None:
        logger.info(
            "job %s (%s): deleted while %s",
            job_id,
            name,
            status,
            extra=_extra(job_id, name),
        )
        self._emit(EventKind.DELETED, job_id, name, 0)

    def _recovered(self, recovered: list[tuple[ClaimedJob, Any]]) -> None:
        # The lost run counts as a failed attempt.
        self.failed += len(recovered)
        for job, outcome in recovered:
            dead = outcome.status == "dead"
            log = logger.error if dead else logger.warning
            log(
                "job %s (%s): the process running attempt %d died; %s",
                job.id,
                job.name,
                job.attempt,
                "no retries left, job is dead" if dead else "due again",
                extra=_extra(job.id, job.name),
            )
            self._emit(
                EventKind.RECOVERED,
                job.id,
                job.name,
                job.attempt,
                error=outcome.error,
                next_run_at=None if dead else from_microseconds(outcome.run_at),
            )

    def _stale(self, job: ClaimedJob, what: str, error: str = "") -> None:
        logger.warning(
            "job %s (%s): %s of attempt %d not recorded because this run no "
            "longer owns the job (its lease expired and another run took it)%s",
            job.id,
            job.name,
            what,
            job.attempt,
            f"; the run failed with {error}" if error else "",
            extra=_extra(job.id, job.name),
        )
