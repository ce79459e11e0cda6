"""The scheduler actor and the dispatcher: when to claim jobs, and for which workers.

The dispatcher claims due jobs for idle workers inside the persistence
actor's transactions: each batch that records finished runs also claims the
next jobs, and the claimed jobs reach their workers in the same step of the
event loop as the commit. The scheduler handles time: it sleeps until the
next scheduled job is due or another process commits, then asks for a
claim.
"""

from __future__ import annotations

import logging
import math

import attrs
import trio
from trio_util import AsyncValue

from ._clock import MAX_NAP, WallClock
from ._handlers import Registry
from ._messages import ClaimDue, ClaimedJob, Release, Reply
from ._persistence import Persistence, claimed_job
from ._store import Store
from ._worker import WorkerPool

logger = logging.getLogger(__name__)

UNHANDLED_WARNING_INTERVAL = 300.0
"""Seconds between two warnings about due jobs that no handler here runs."""

UNHANDLED_COUNT_CAP = 1000
"""Jobs counted at most per name in that warning."""

PROMOTE_CHUNK = 500
"""Scheduled and retrying jobs made pending at most per claim, once due.

A larger number costs one long statement when many jobs come due at one
instant; among due jobs that are not yet pending, the earliest go first.
"""

CLAIM_ERROR_PAUSE = 1.0
"""Seconds without claims after a claim failed."""

DATA_VERSION_POLL = 0.025
"""Seconds between two checks for commits by other processes while idle.

A check is one ``PRAGMA data_version``, a few microseconds, so a job
enqueued by another process starts within about this time.
"""

MOCK_DATA_VERSION_POLL = 1.0
"""The same, in virtual seconds, when the run uses a MockClock."""


@attrs.define(eq=False)
class Dispatcher:
    """Claims due jobs for the idle workers and hands the jobs over.

    The persistence actor calls :meth:`claim` inside each batch's
    transaction and :meth:`dispatch` after the commit. ``wanted`` records
    whether due jobs may be waiting: a claim that finds fewer jobs than it
    asked for clears it, and anything that may make a job due sets it.
    """

    store: Store
    persistence: Persistence
    registry: Registry
    pool: WorkerPool
    owner_id: str
    wakeups: AsyncValue[int]
    wanted: bool = True
    closed: bool = False
    paused_until: float = -math.inf
    _more_due: bool = attrs.field(default=False, init=False)

    def want(self) -> None:
        self.wanted = True

    def close(self) -> None:
        """Claim nothing more: the queue is stopping."""
        self.closed = True

    def can_claim(self) -> bool:
        return (
            self.wanted
            and not self.closed
            and bool(self.pool.idle)
            and bool(self.registry.names())
            and trio.current_time() >= self.paused_until
        )

    def claim(self, now: int) -> tuple[list[ClaimedJob], int]:
        if not self.can_claim():
            return [], 0
        names = self.registry.names()
        limit = len(self.pool.idle)
        self._more_due = self.store.promote_due(now, PROMOTE_CHUNK) == PROMOTE_CHUNK
        rows = self.store.claim(names, limit, now, self.owner_id)
        return [claimed_job(row, self.owner_id) for row in rows], limit

    def dispatch(self, jobs: list[ClaimedJob], requested: int) -> None:
        if self._more_due:
            # More jobs came due than one claim makes pending: the next
            # batch goes on, even if this claim found nothing to run.
            self.persistence.submit_nowait(ClaimDue())
        elif len(jobs) < requested:
            self.wanted = False
        for job in jobs:
            worker = self.pool.take_idle()
            try:
                worker.assign(job)
            except trio.ClosedResourceError:
                # The worker was cancelled while the claim committed.
                self.persistence.submit_nowait(Release(job=job, reply=Reply()))

    def pause(self, error: Exception) -> None:
        logger.error(
            "claiming due jobs failed; trying again in %g s: %s",
            CLAIM_ERROR_PAUSE,
            error,
            exc_info=error,
        )
        self.paused_until = trio.current_time() + CLAIM_ERROR_PAUSE
        self.wakeups.value += 1  # the scheduler wakes at the end of the pause


@attrs.define(eq=False)
class Scheduler:
    """Asks for a claim whenever jobs may have come due by time or by the
    commit of another process.

    It sleeps until the next job is due, a wake-up arrives (a job scheduled
    or a run failed, so the next due time may be sooner), another process
    commits, or :data:`MAX_NAP` passes, whichever is first.
    """

    store: Store
    persistence: Persistence
    dispatcher: Dispatcher
    registry: Registry
    clock: WallClock
    wakeups: AsyncValue[int]
    watch_other_processes: bool
    _next_unhandled_check: float = attrs.field(default=-math.inf, init=False)
    # Wall time of the last claim request: every job due by then is either
    # claimed or waits for a worker, so the next nap waits for later ones.
    _requested_at: int = attrs.field(default=0, init=False)

    async def run(self) -> None:
        while True:
            generation = self.wakeups.value
            self._request_claim()
            # A nap that reached its deadline without a wake-up ends the wait
            # only if a job came due by then; else it was a nap of MAX_NAP,
            # after which the wall clock is read again.
            while not await self._nap(generation) and not self._future_job_due():
                pass

    def _request_claim(self) -> None:
        self._requested_at = self.clock.now_us()
        self.dispatcher.want()
        if self.dispatcher.pool.idle:
            self.persistence.submit_nowait(ClaimDue())

    def _next_due(self) -> int | None:
        # Future jobs of every name count: waking for one that this process
        # has no handler for costs one empty claim. After a backward jump of
        # the wall clock, jobs due between now and the last request count
        # as future again.
        after = min(self._requested_at, self.clock.now_us())
        return self.store.next_future_time(after)

    def _future_job_due(self) -> bool:
        next_due = self._next_due()
        return next_due is not None and next_due <= self.clock.now_us()

    async def _nap(self, generation: int) -> bool:
        """Sleep until the next job is due, and return whether something woke
        the scheduler before that."""
        next_due = self._next_due()
        if next_due is not None:
            deadline = self.clock.deadline_for(next_due)
        elif self.clock.is_mock():
            deadline = math.inf  # a mock wall clock cannot jump
        else:
            deadline = trio.current_time() + MAX_NAP
        if self.dispatcher.paused_until > trio.current_time():
            deadline = min(deadline, self.dispatcher.paused_until)
        self._warn_unhandled(self.registry.names())
        if not self.watch_other_processes:
            with trio.move_on_at(deadline):
                await self.wakeups.wait_value(lambda value: value != generation)
                return True
            return False
        await trio.lowlevel.checkpoint()
        # Under a MockClock a finer poll would only burn real time: there,
        # another queue on the file is in the same test.
        poll = MOCK_DATA_VERSION_POLL if self.clock.is_mock() else DATA_VERSION_POLL
        return await self._nap_watching(generation, deadline, poll)

    async def _nap_watching(
        self, generation: int, deadline: float, poll: float
    ) -> bool:
        """Nap as :meth:`_nap` does, and also wake when another connection
        commits to the database, which ``PRAGMA data_version`` reveals."""
        version = self.store.data_version()
        while trio.current_time() < deadline:
            poll_at = min(deadline, trio.current_time() + poll)
            with trio.move_on_at(poll_at):
                await self.wakeups.wait_value(lambda value: value != generation)
                return True
            if self.store.data_version() != version:
                return True
        return False

    def _warn_unhandled(self, names: frozenset[str]) -> None:
        """Log due jobs that no handler in this process can run.

        They are left pending, never dropped, because another process with
        that handler may run them.
        """
        if trio.current_time() < self._next_unhandled_check:
            return
        self._next_unhandled_check = trio.current_time() + UNHANDLED_WARNING_INTERVAL
        found, more = self.store.ready_unhandled(names, cap=UNHANDLED_COUNT_CAP)
        for name, count in found:
            shown = f"{count}+" if count >= UNHANDLED_COUNT_CAP else str(count)
            logger.warning(
                "due jobs named %r have no handler registered here (count: %s); "
                "they stay pending until a process that handles %r runs them",
                name,
                shown,
                name,
                extra={"job_name": name},
            )
        if more:
            logger.warning(
                "due jobs of more names have no handler registered here; "
                "'pulse-trio stats' lists the due jobs by name"
            )
