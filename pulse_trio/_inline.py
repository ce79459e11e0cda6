"""Inline mode: each job runs inside the enqueue call that stored it.

An inline queue (``Pulse.in_memory(inline=True)``) has no scheduler and no
workers. Enqueueing stores the job, then runs its handler in the calling
task and records every run in the database, so :meth:`Pulse.status` reports
the same attempts, errors and final status that a running queue would. A
failed run is retried at once, skipping the backoff, until the job
completes or is dead.

The queue's persistence actor never runs in this mode, so every request is
applied and committed as soon as it is submitted, and the claims made here
write to the store directly.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import attrs
import trio

from ._clock import WallClock
from ._context import enter_job, leave_job
from ._handlers import Handler, Registry
from ._messages import ClaimedJob, Complete, Fail
from ._persistence import Persistence, claimed_job
from ._report import Reporter
from ._scheduler import PROMOTE_CHUNK
from ._store import Store
from ._worker import (
    describe_error,
    format_traceback,
    job_context,
    must_propagate,
    release_job,
    timeout_text,
)

logger = logging.getLogger(__name__)


@attrs.define(eq=False)
class InlineRunner:
    """Runner of an inline queue's jobs, in the task that enqueues them."""

    store: Store
    persistence: Persistence
    registry: Registry
    reporter: Reporter
    clock: WallClock
    owner_id: str = attrs.field(factory=lambda: f"inline-{uuid.uuid4().hex}")

    async def run_jobs(self, job_ids: Sequence[str]) -> None:
        """Run each job of *job_ids* that is due, one after the other.

        A job that is not yet due stays scheduled, and a job whose name has
        no handler stays pending, as it would on a running queue.
        """
        for job_id in job_ids:
            job = self._claim_job(job_id)
            if job is not None:
                await self._run_to_end(job)

    async def drain(self, include_scheduled: bool) -> None:
        """Run every due job that has a handler, until none is due.

        With *include_scheduled*, then sleep until the next future job is
        due and run it too, until no job of a handled name is waiting.
        """
        while True:
            while (job := self._claim_next()) is not None:
                await self._run_to_end(job)
            if not include_scheduled:
                return
            next_due = self.store.next_future_time_for(self.registry.names())
            if next_due is None:
                return
            await trio.sleep_until(self.clock.deadline_for(next_due))

    # -- claims ----------------------------------------------------------

    def _claim_job(self, job_id: str) -> ClaimedJob | None:
        row = self.store.get(job_id)
        if row is None:
            return None
        if self.registry.get(row["name"]) is None:
            logger.warning(
                "job %s (%s): no handler is registered for it on this inline "
                "queue, so it stays pending; register one with handle() and "
                "call drain() to run it",
                job_id,
                row["name"],
                extra={"job_id": job_id, "job_name": row["name"]},
            )
            return None
        with self.store.write():
            claimed = self.store.claim_job(job_id, self.clock.now_us(), self.owner_id)
        return None if claimed is None else claimed_job(claimed, self.owner_id)

    def _claim_next(self) -> ClaimedJob | None:
        names = self.registry.names()
        if not names:
            return None
        with self.store.write():
            now = self.clock.now_us()
            while self.store.promote_due(now, PROMOTE_CHUNK) == PROMOTE_CHUNK:
                pass
            rows = self.store.claim(names, 1, now, self.owner_id)
        return claimed_job(rows[0], self.owner_id) if rows else None

    # -- runs ------------------------------------------------------------

    async def _run_to_end(self, job: ClaimedJob) -> None:
        """Run *job*, and retry it at once after each failure it survives."""
        current: ClaimedJob | None = job
        while current is not None:
            retry = await self._run_once(current)
            current = self._claim_job(current.id) if retry else None

    async def _run_once(self, job: ClaimedJob) -> bool:
        """Run one attempt of *job* and record it; return True to retry."""
        handler = self.registry.get(job.name)
        assert handler is not None, "claimed only jobs with a handler"
        token = enter_job(job_context(job, self.clock))
        try:
            return await self._call(handler, job)
        finally:
            leave_job(token)

    async def _call(self, handler: Handler, job: ClaimedJob) -> bool:
        timeout = job.config.timeout
        limit = None if timeout is None else timeout.total_seconds()
        start = trio.current_time()
        self.reporter.started(job)
        scope = trio.CancelScope()
        try:
            payload: Any = json.loads(job.payload)
            if limit is None:
                with scope:
                    await handler.call(payload)
            else:
                with trio.fail_after(limit) as scope:
                    await handler.call(payload)
        except BaseException as exc:
            duration = trio.current_time() - start
            if must_propagate(exc):
                await release_job(self.persistence, job)
                raise
            if isinstance(exc, trio.TooSlowError) and scope.cancelled_caught:
                timed_out = timeout_text(job, duration, limit)
                await self._fail(job, duration, f"{timed_out} and was cancelled", exc)
            else:
                await self._fail(job, duration, describe_error(exc), exc)
            stored = self.store.get(job.id)
            return stored is not None and stored["status"] == "retrying"
        await self.persistence.submit(
            Complete(job=job, duration=trio.current_time() - start)
        )
        return False

    async def _fail(
        self,
        job: ClaimedJob,
        duration: float,
        error: str,
        exc: BaseException | None = None,
    ) -> None:
        # The retry rule reads the backoff from the claimed job's config, so
        # a zero retry delay here makes the retry due at once while the
        # stored config stays as enqueued.
        immediate = attrs.evolve(
            job, config=attrs.evolve(job.config, retry_delay=timedelta(0))
        )
        await self.persistence.submit(
            Fail(
                job=immediate,
                duration=duration,
                error=error,
                traceback="" if exc is None else format_traceback(exc),
                exception=exc,
            )
        )
