"""What happens after a batch commits: log records and scheduler wake-ups.

Nothing here runs before the change it reports is on disk, so a log line
that says a job completed is never followed by a rerun of the same attempt.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
from trio_util import AsyncValue

from ._job import from_microseconds
from ._messages import (
    Complete,
    Fail,
    Insert,
    Message,
    RecoverOrphans,
    Release,
    RetryDead,
)

logger = logging.getLogger("pulse_trio.jobs")


def _extra(job_id: str, name: str) -> dict[str, str]:
    return {"job_id": job_id, "job_name": name}


@attrs.define(eq=False)
class Reporter:
    """Logs committed changes and wakes the scheduler when work may be due."""

    wakeups: AsyncValue[int]
    completed: int = 0
    failed: int = 0

    def wake(self) -> None:
        self.wakeups.value += 1

    def __call__(self, message: Message, result: Any) -> None:
        match message:
            case Insert(rows=rows):
                for row in rows:
                    logger.debug(
                        "job %s (%s): enqueued",
                        row["id"],
                        row["name"],
                        extra=_extra(row["id"], row["name"]),
                    )
                self.wake()
            case Complete():
                self._completed(message, result)
            case Fail():
                self._failed(message, result)
                self.wake()
            case Release(job=job) if result:
                logger.info(
                    "job %s (%s): attempt %d cancelled by shutdown; pending "
                    "again, attempt not counted",
                    job.id,
                    job.name,
                    job.attempt,
                    extra=_extra(job.id, job.name),
                )
                self.wake()
            case RetryDead(job_id=job_id):
                logger.info(
                    "job %s: dead job retried; pending again",
                    job_id,
                    extra={"job_id": job_id},
                )
                self.wake()
            case RecoverOrphans():
                self._recovered(result)
            case _:
                pass

    def _completed(self, message: Complete, recorded: bool) -> None:
        job = message.job
        if not recorded:
            self._stale(message.job.id, job.name, "completion")
            return
        self.completed += 1
        logger.info(
            "job %s (%s): completed in %.3f s on attempt %d",
            job.id,
            job.name,
            message.duration,
            job.attempt,
            extra=_extra(job.id, job.name),
        )

    def _failed(self, message: Fail, outcome: Any) -> None:
        job = message.job
        if outcome is None:
            self._stale(job.id, job.name, "failure")
            return
        self.failed += 1
        exc = message.exception
        exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
        if outcome.status == "dead":
            logger.error(
                "job %s (%s): attempt %d failed, no retries left; job is dead: %s",
                job.id,
                job.name,
                job.attempt,
                message.error,
                exc_info=exc_info,
                extra=_extra(job.id, job.name),
            )
            return
        logger.warning(
            "job %s (%s): attempt %d failed; retry at %s: %s",
            job.id,
            job.name,
            job.attempt,
            from_microseconds(outcome.run_at).isoformat(),
            message.error,
            exc_info=exc_info,
            extra=_extra(job.id, job.name),
        )

    def _recovered(self, recovered: list[Any]) -> None:
        for job, status in recovered:
            log = logger.error if status == "dead" else logger.warning
            log(
                "job %s (%s): its owner died during attempt %d; %s",
                job.id,
                job.name,
                job.attempt,
                "no retries left, job is dead" if status == "dead" else "due again",
                extra=_extra(job.id, job.name),
            )
        if recovered:
            self.wake()

    def _stale(self, job_id: str, name: str, what: str) -> None:
        logger.warning(
            "job %s (%s): %s not recorded because this run no longer owns the "
            "job (its lease expired and another run took it over)",
            job_id,
            name,
            what,
            extra=_extra(job_id, name),
        )
