"""The scheduler actor: claims due jobs and hands them to idle workers."""

from __future__ import annotations

import logging
import math

import attrs
import trio
from trio_util import AsyncValue

from ._clock import MAX_NAP, WallClock
from ._errors import PulseError
from ._handlers import Registry
from ._messages import Claim, ClaimedJob, Reply
from ._persistence import Persistence
from ._store import Store
from ._worker import Worker, WorkerPool, release_job

logger = logging.getLogger(__name__)

UNHANDLED_WARNING_INTERVAL = 300.0
"""Seconds between two warnings about due jobs that no handler here runs."""

CLAIM_ERROR_PAUSE = 1.0
"""Seconds to wait after a failed claim before the next one."""

DATA_VERSION_POLL = 0.025
"""Seconds between two checks for commits by other processes while idle.

A check is one ``PRAGMA data_version``, a few microseconds, so a job
enqueued by another process starts within about this time.
"""


@attrs.define(eq=False)
class Scheduler:
    """Claims due jobs, highest priority first, as workers become idle.

    It sleeps until the next job is due, a wake-up arrives (an enqueue, a
    failed run's retry, a release) or :data:`MAX_NAP` passes, whichever is
    first.
    """

    store: Store
    persistence: Persistence
    registry: Registry
    pool: WorkerPool
    clock: WallClock
    owner_id: str
    wakeups: AsyncValue[int]
    watch_other_processes: bool
    _next_unhandled_check: float = attrs.field(default=-math.inf, init=False)

    async def run(self) -> None:
        while True:
            await self.pool.idle_count.wait_value(lambda idle: idle > 0)
            generation = self.wakeups.value
            workers = self.pool.reserve_all()
            claimed = await self._claim_for(workers)
            if claimed < len(workers):
                await self._nap(generation)

    # A KeyboardInterrupt between the claim's commit and the dispatch would
    # strand the claimed jobs as running, so it is delivered elsewhere.
    @trio.lowlevel.enable_ki_protection
    async def _claim_for(self, workers: list[Worker]) -> int:
        names = self.registry.names()
        reply: Reply[list[ClaimedJob]] = Reply()
        jobs: list[ClaimedJob] = []
        failure: PulseError | None = None
        # A claim that commits must reach a worker, so waiting for it is
        # shielded: cancelling here would strand the claimed jobs as running.
        with trio.CancelScope(shield=True):
            try:
                await self.persistence.submit(
                    Claim(
                        names=names,
                        limit=len(workers),
                        owner=self.owner_id,
                        reply=reply,
                    )
                )
                jobs = await reply.wait()
            except PulseError as exc:
                failure = exc
            for worker, job in zip(workers, jobs, strict=False):
                await self._dispatch(worker, job)
        for worker in workers[len(jobs) :]:
            self.pool.mark_idle(worker)
        if failure is not None:
            logger.error("claiming due jobs failed: %s", failure, exc_info=failure)
            await trio.sleep(CLAIM_ERROR_PAUSE)
            return len(workers)
        return len(jobs)

    async def _dispatch(self, worker: Worker, job: ClaimedJob) -> None:
        try:
            worker.assign(job)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            # The worker stopped while the claim committed.
            await release_job(self.persistence, job)

    async def _nap(self, generation: int) -> None:
        names = self.registry.names()
        # Future jobs of every name count: waking for one that this process
        # has no handler for costs one empty claim.
        next_due = self.store.next_future_time()
        if next_due is None:
            deadline = trio.current_time() + MAX_NAP
        else:
            deadline = self.clock.deadline_for(next_due)
        self._warn_unhandled(names)
        if not self.watch_other_processes or self.clock.is_mock():
            with trio.move_on_at(deadline):
                await self.wakeups.wait_value(lambda value: value != generation)
            return
        await self._nap_watching(generation, deadline)

    async def _nap_watching(self, generation: int, deadline: float) -> None:
        """Nap as :meth:`_nap` does, and also wake when another connection
        commits to the database, which ``PRAGMA data_version`` reveals."""
        version = self.store.data_version()
        while trio.current_time() < deadline:
            poll_at = min(deadline, trio.current_time() + DATA_VERSION_POLL)
            with trio.move_on_at(poll_at):
                await self.wakeups.wait_value(lambda value: value != generation)
                return
            if self.store.data_version() != version:
                return

    def _warn_unhandled(self, names: frozenset[str]) -> None:
        """Log due jobs that no handler in this process can run.

        They are left pending, never dropped, because another process with
        that handler may run them.
        """
        if trio.current_time() < self._next_unhandled_check:
            return
        self._next_unhandled_check = trio.current_time() + UNHANDLED_WARNING_INTERVAL
        for name, count in self.store.ready_unhandled(names):
            logger.warning(
                "due jobs named %r have no handler registered here (count: %d); "
                "they stay pending until a process that handles %r runs them",
                name,
                count,
                name,
                extra={"job_name": name},
            )
