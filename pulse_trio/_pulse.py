"""The :class:`Pulse` queue: the public face over the actors."""

from __future__ import annotations

import enum
import json
import logging
import math
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from operator import ne
from types import TracebackType
from typing import Any, TypeVar, final

import trio

from ._clock import WallClock
from ._config import JobConfig, JobPriority, to_duration, to_microseconds
from ._context import current_job_or_none
from ._errors import (
    DatabaseError,
    JobNotFound,
    PulseError,
    QueueClosed,
)
from ._events import Listener, Listeners
from ._handlers import HandlerFunction, Registry, check_job_name
from ._ids import new_job_ids
from ._inline import InlineRunner
from ._inputs import (
    DueTime,
    QueueOptions,
    check_config,
    check_due_range,
    check_flag,
    check_workers,
    config_columns,
    due_time,
    encode_payload,
)
from ._job import (
    FINISHED_STATUSES,
    Job,
    JobStatus,
    from_microseconds,
    job_from_row,
    to_status,
)
from ._messages import (
    Delete,
    DeleteMatching,
    Insert,
    Purge,
    RecoverOrphans,
    RemoveOwner,
    RenewLease,
    Reply,
    RetryAllDead,
    RetryDead,
)
from ._owner import Owner, owner_is_dead
from ._persistence import Persistence
from ._report import Reporter
from ._scheduler import Dispatcher, Scheduler
from ._stats import PulseStatistics, QueueInfo, QueueSummary
from ._store import Store, StoreBusy, Synchronous
from ._worker import Worker, WorkerPool, leaf_exceptions

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=HandlerFunction)

DEFAULT_MAX_PAYLOAD_BYTES = 1024 * 1024
"""Largest encoded payload accepted by default: 1 MiB."""

DEFAULT_LEASE = timedelta(seconds=20)
"""How long a running queue's claim on its jobs lasts without renewal.

The lease is renewed and other owners are checked every lease/3, so the
jobs of an owner on another host that died are recovered at most
lease * 4/3 (about 27 s) after its last renewal.
"""

INSERT_CHUNK = 1000
"""Rows per insert request in :meth:`Pulse.enqueue_many`."""

DEFAULT_KEEP_COMPLETED = timedelta(days=1)
"""How long completed jobs are kept by default."""

PRUNE_INTERVAL = 60.0
"""Seconds between two passes of the task that deletes old completed jobs."""

PRUNE_CHUNK = 500

SCAN_WINDOW = 10_000
"""Seqs that :meth:`Pulse.delete_all` reads in one step of the event loop."""

DELETE_CHUNK = 200
"""Jobs that :meth:`Pulse.delete_all` deletes per transaction. Each one is
also logged, in the same step of the event loop."""
"""Rows deleted per transaction by purges and the retention task."""

WAIT_POLL = 0.05
"""Seconds between checks of a file database for changes by other
processes while :meth:`Pulse.wait` waits."""

MOCK_WAIT_POLL = 1.0
"""The same, in virtual seconds, when the run uses a MockClock."""

OWNER_WRITE_TIMEOUT = 5.0
"""Seconds a stopping queue waits for its owner record to be removed."""

OPEN_BUSY_LIMIT = 30.0
"""Seconds :meth:`Pulse.new` keeps retrying while another connection holds
a lock that opening needs (a new file switching to WAL, or a migration)."""


class _State(enum.Enum):
    IDLE = "idle"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


@final
class Pulse:
    """A persistent job queue on one SQLite database.

    Open one with :meth:`new` (a file) or :meth:`in_memory`, register
    handlers with :meth:`handle`, enqueue jobs, and process them with
    :meth:`run`. A ``Pulse`` runs once: after a shutdown it takes no new
    jobs, but its reads (:meth:`status`, :meth:`dead_jobs`) keep working
    until :meth:`close`.
    """

    def __init__(
        self,
        store: Store,
        *,
        workers: int | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        lease: timedelta | float = DEFAULT_LEASE,
        keep_completed: timedelta | float | None = DEFAULT_KEEP_COMPLETED,
        inline: bool = False,
    ) -> None:
        """Wrap an open store; use :meth:`new` or :meth:`in_memory` instead."""
        self._store = store
        self._clock = WallClock()
        self._registry = Registry()
        options = QueueOptions.check(workers, max_payload_bytes, lease, keep_completed)
        self._workers = options.workers
        self._max_payload_bytes = options.max_payload_bytes
        self._lease = options.lease
        self._keep_completed = options.keep_completed
        self._listeners = Listeners()
        self._reporter = Reporter(self._clock, self._listeners)
        self._wakeups = self._reporter.wakeups
        self._persistence = Persistence(store, self._clock, self._reporter)
        self._state = _State.IDLE
        self._closed = False
        self._stop_requested = trio.Event()
        self._stop_now = False
        self._stop_deadline = math.inf
        self._crew_stopping = False
        self._stopped = trio.Event()
        self._crew_scope: trio.CancelScope | None = None
        self._pool: WorkerPool | None = None
        self._dispatcher: Dispatcher | None = None
        self._shut_down_before_run = False
        self._owner: Owner | None = None
        self._context: AbstractAsyncContextManager[Pulse] | None = None
        self._inline = (
            InlineRunner(
                store, self._persistence, self._registry, self._reporter, self._clock
            )
            if inline
            else None
        )

    # -- opening ---------------------------------------------------------

    @classmethod
    async def new(
        cls,
        path: str | os.PathLike[str],
        *,
        workers: int | None = None,
        synchronous: Synchronous = "NORMAL",
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        lease: timedelta | float = DEFAULT_LEASE,
        keep_completed: timedelta | float | None = DEFAULT_KEEP_COMPLETED,
        create: bool = True,
    ) -> Pulse:
        """Open the queue in the SQLite file at *path*, creating it if missing.

        Args:
            path: The database file. Its folder must exist.
            workers: Jobs run at once; defaults to the CPU count.
            synchronous: ``"NORMAL"`` survives a crash of the process;
                ``"FULL"`` also survives a power loss, at some cost in speed.
            max_payload_bytes: Largest payload that enqueue accepts, in
                bytes of its UTF-8 JSON encoding; 1 MiB by default.
            lease: How long the jobs of a running queue stay claimed without
                renewal, after its process dies, before another takes them;
                20 s by default. A dead owner on another host is noticed
                within about lease * 4/3, and on this host as soon as its
                process is gone, at the next check (every lease/3).
            keep_completed: How long completed jobs are kept before a
                running queue deletes them; ``None`` keeps them forever.
                Dead jobs are kept until retried or purged.
            create: Create the file and its tables if missing. With
                ``False``, a missing file or one that is not a pulse-trio
                database raises :exc:`DatabaseError` and is left unchanged;
                tools that inspect an existing queue use this.

        Raises:
            DatabaseError: The file cannot be opened or is not a pulse-trio
                database.
            SchemaTooNew: A newer pulse-trio wrote the database.
        """
        # Checked first, so that a bad option leaves no new file behind.
        QueueOptions.check(workers, max_payload_bytes, lease, keep_completed)
        store = await _open_file_store(path, synchronous, create)
        try:
            return cls(
                store,
                workers=workers,
                max_payload_bytes=max_payload_bytes,
                lease=lease,
                keep_completed=keep_completed,
            )
        except BaseException:
            store.close()
            raise

    @classmethod
    def in_memory(
        cls,
        *,
        workers: int | None = None,
        max_payload_bytes: int = DEFAULT_MAX_PAYLOAD_BYTES,
        keep_completed: timedelta | float | None = None,
        inline: bool = False,
    ) -> Pulse:
        """Open a queue in a private in-memory database, for tests.

        Its jobs are lost when the ``Pulse`` is closed or the process ends.

        Args:
            keep_completed: How long completed jobs are kept; by default
                forever, so that a test that runs for virtual days can still
                read the jobs it completed.
            inline: Run each job inside the enqueue call that stores it, in
                the calling task, and retry failed runs at once. Such a queue
                has no :meth:`run`, and :meth:`drain` runs the jobs that are
                due. The testing guide lists its rules and limits.
        """
        QueueOptions.check(workers, max_payload_bytes, DEFAULT_LEASE, keep_completed)
        return cls(
            Store.open_memory(),
            workers=workers,
            max_payload_bytes=max_payload_bytes,
            keep_completed=keep_completed,
            inline=inline,
        )

    @property
    def _shared(self) -> bool:
        """Whether other queues can open the database: then this one takes a
        lease and recovers the jobs of dead ones. No other queue can open
        an in-memory database, so that work is skipped there."""
        return self._store.has_wal

    def with_workers(self, workers: int) -> Pulse:
        """Set how many jobs run at once, and return this queue."""
        if self._state is not _State.IDLE:
            raise PulseError("set the number of workers before run() starts")
        self._workers = check_workers(workers)
        return self

    @property
    def workers(self) -> int:
        """How many jobs run at once."""
        return self._workers

    @property
    def database(self) -> str:
        """Path of the database file, or ``":memory:"``."""
        return self._store.description

    def close(self) -> None:
        """Close the database connection. The queue must not be running."""
        if self._state in (_State.RUNNING, _State.STOPPING):
            raise PulseError("shut the queue down before closing it")
        self._state = _State.STOPPED
        self._closed = True
        self._store.close()

    def _check_usable(self) -> None:
        if self._closed:
            raise PulseError(
                f"the queue on {self.database!r} was closed; open a new Pulse "
                "to use the database again"
            )

    # -- handlers --------------------------------------------------------

    def handle(self, name: str, handler: F) -> F:
        """Register *handler* to run the jobs named *name*, and return it.

        An ``async def`` handler runs on the event loop and its timeout
        cancels it. A plain function runs in a worker thread, which a timeout
        or a shutdown cannot interrupt: they wait for it to return.

        Raises:
            InvalidJobName: *name* is empty or not a string.
            HandlerError: *handler* is not callable, or *name* already has one.
        """
        self._registry.add(name, handler)
        self._reporter.wake()  # jobs of this name may already be due
        return handler

    def handled_names(self) -> frozenset[str]:
        """Names of the jobs this queue has handlers for."""
        return self._registry.names()

    # -- enqueueing ------------------------------------------------------

    async def enqueue(
        self, name: str, payload: Any = None, *, config: JobConfig | None = None
    ) -> str:
        """Store a job that is due now, and return its id.

        Returns once the job is committed to the database.

        Args:
            config: The job's priority, retries and timeout; the defaults of
                :class:`JobConfig` if not given.

        Raises:
            InvalidJobName: *name* is empty or not a string.
            InvalidPayload: *payload* cannot be encoded as JSON or is too big.
            QueueClosed: The queue is shutting down or shut down.
        """
        return (await self._insert(name, (payload,), config, run_at=None))[0]

    async def enqueue_with_config(
        self, name: str, payload: Any = None, config: JobConfig | None = None
    ) -> str:
        """Store a job that is due now with its own *config*, and return its id."""
        return (await self._insert(name, (payload,), config, run_at=None))[0]

    async def enqueue_many(
        self, name: str, payloads: Iterable[Any], config: JobConfig | None = None
    ) -> list[str]:
        """Store one job per payload, all due now, and return their ids.

        Every payload is checked before anything is stored, so a bad payload
        stores none of them.
        """
        return await self._insert(name, list(payloads), config, run_at=None)

    async def schedule(
        self,
        name: str,
        payload: Any = None,
        run_at: datetime | None = None,
        *,
        delay: timedelta | float | None = None,
        config: JobConfig | None = None,
    ) -> str:
        """Store a job that is due at *run_at*, or after *delay*.

        Args:
            run_at: An aware datetime. A time in the past is due at once.
            delay: A timedelta or seconds from now, instead of *run_at*.

        Raises:
            ValueError: *run_at* is naive, or neither or both of *run_at*
                and *delay* are given.
        """
        return (
            await self._insert(name, [payload], config, run_at=due_time(run_at, delay))
        )[0]

    async def _insert(
        self,
        name: str,
        payloads: Sequence[Any],
        config: JobConfig | None,
        run_at: DueTime | None,
    ) -> list[str]:
        check_job_name(name)
        config = check_config(config)
        limit = self._max_payload_bytes
        texts = [encode_payload(name, payload, limit) for payload in payloads]
        self._check_open()
        now = self._clock.now_us()
        due = now if run_at is None else run_at.resolve(now)
        if run_at is not None:
            check_due_range(due, run_at.description)
        columns = config_columns(config)
        due_now = due <= now
        status = "pending" if due_now else "scheduled"
        ids = new_job_ids(now, len(texts))
        rows = [
            (job_id, name, text, status, *columns, now, due)
            for job_id, text in zip(ids, texts, strict=True)
        ]
        for start in range(0, len(rows), INSERT_CHUNK):
            chunk = tuple(rows[start : start + INSERT_CHUNK])
            reply: Reply[None] = Reply()
            message = Insert(name=name, rows=chunk, due_now=due_now, reply=reply)
            if not self._persistence.try_submit_nowait(message):
                await self._persistence.submit(message)
            await reply.wait()
        if self._inline is not None:
            await self._inline.run_jobs(ids)
        return ids

    def _check_open(self) -> None:
        self._check_usable()
        if self._state is _State.STOPPING and current_job_or_none() is not None:
            # A graceful shutdown lets running jobs finish, and finishing may
            # mean storing follow-up jobs; they stay pending for a later run.
            return
        if self._state in (_State.STOPPING, _State.STOPPED):
            raise self._closed_error()

    def _closed_error(self) -> QueueClosed:
        return QueueClosed(
            f"the queue on {self.database!r} is {self._state.value} and takes "
            "no new jobs; nothing was stored. Open a new Pulse to enqueue more"
        )

    # -- reading ---------------------------------------------------------

    async def status(self, job_id: str) -> Job:
        """Return a snapshot of the job with id *job_id*.

        Raises:
            JobNotFound: No such job; it is also a :exc:`LookupError`.
        """
        self._check_usable()
        row = self._store.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        return job_from_row(row, self._clock.now_us())

    async def dead_jobs(self) -> list[Job]:
        """Return the dead jobs, the oldest death first."""
        self._check_usable()
        now = self._clock.now_us()
        return [job_from_row(row, now) for row in self._store.dead()]

    async def retry(self, job_id: str) -> None:
        """Make a dead job pending now, with attempts reset to 0.

        It keeps its payload, config and error history. This works after a
        shutdown too, so that a later queue on the same database runs it.

        Raises:
            JobNotFound: No such job.
            JobNotDead: The job is not dead.
        """
        self._check_usable()
        reply: Reply[tuple[str, str]] = Reply()
        await self._persistence.submit(RetryDead(job_id=job_id, reply=reply))
        await reply.wait()

    async def delete(self, job_id: str) -> None:
        """Delete the job *job_id*, whatever its status but running.

        A pending, scheduled or retrying job is then never run, and a
        completed or dead one leaves the database.

        Raises:
            JobNotFound: No such job.
            JobRunning: The job is running; delete it once the run ends.
        """
        self._check_usable()
        reply: Reply[tuple[str, str]] = Reply()
        await self._persistence.submit(Delete(job_id=job_id, reply=reply))
        await reply.wait()

    async def delete_all(
        self,
        *,
        name: str | None = None,
        status: JobStatus | str | None = None,
        dry_run: bool = False,
    ) -> int:
        """Delete every job named *name* and of *status*, but running ones.

        Pass one or both filters. *status* is a reported status, as in
        :meth:`list_jobs`, so ``"pending"`` includes scheduled and retrying
        jobs that are due. Only jobs stored before the call started are
        deleted, and only those that still match and are not running when
        their turn comes: a job a worker has started meanwhile is left to
        finish. Each deleted job is logged at INFO and emits a ``DELETED``
        event, and :meth:`wait` on it raises :exc:`JobNotFound`.

        Args:
            name: Delete only jobs of this name.
            status: Delete only jobs of this status; not RUNNING.
            dry_run: Delete nothing; return how many jobs match now.

        Returns:
            How many jobs were deleted (or, with *dry_run*, match).

        Raises:
            ValueError: Neither filter was given, or *status* is RUNNING.
        """
        self._check_usable()
        check_flag(dry_run, name="dry_run")
        if name is not None:
            check_job_name(name)
        stored = None if status is None else to_status(status).value
        if stored == JobStatus.RUNNING.value:
            raise ValueError(
                "delete_all() leaves running jobs alone, so status cannot be "
                "running; pass another status, or wait for the runs to end"
            )
        if name is None and stored is None:
            raise ValueError(
                "delete_all() needs name=, status= or both, so that it never "
                "empties the queue by mistake; to delete every waiting job, "
                "call it once per status"
            )
        await trio.lowlevel.checkpoint()
        seqs = self._store.seq_range()
        if seqs is None:
            return 0
        # New jobs get higher seqs, so the jobs stored before this call are
        # those up to the highest seq now.
        # NOTE: SQLite gives a new job the seq of the newest job if that one
        # was deleted meanwhile, so such a job may be deleted too.
        after, last = seqs[0] - 1, seqs[1]
        count = 0
        while after < last:
            window = (after, min(after + SCAN_WINDOW, last))
            now = self._clock.now_us()
            if dry_run:
                count += self._store.count_matching(stored, name, window, now)
            else:
                ids = self._store.matching_ids(stored, name, window, now)
                count += await self._delete_ids(ids, stored)
            after = window[1]
            await trio.lowlevel.checkpoint()
        return count

    async def _delete_ids(self, ids: list[str], status: str | None) -> int:
        deleted = 0
        for start in range(0, len(ids), DELETE_CHUNK):
            reply: Reply[list[tuple[str, str, str]]] = Reply()
            chunk = tuple(ids[start : start + DELETE_CHUNK])
            message = DeleteMatching(ids=chunk, status=status, reply=reply)
            await self._persistence.submit(message)
            deleted += len(await reply.wait())
        return deleted

    async def retry_all_dead(self, name: str | None = None) -> int:
        """Make every dead job pending now, or only those named *name*.

        Only jobs that were dead when the call started are retried, so a
        job that dies again while the call goes on is not retried twice.

        Returns:
            How many jobs were retried.
        """
        self._check_usable()
        # The dead jobs are listed first, so that one that dies again while
        # the call goes on is not retried twice.
        ids: list[str] = []
        until = self._clock.now_us()
        after = (-1, -1)
        while page := self._store.dead_page(name, until, after, PRUNE_CHUNK):
            ids += [job_id for _, _, job_id in page]
            after = page[-1][:2]
            await trio.lowlevel.checkpoint()
        retried = 0
        for start in range(0, len(ids), PRUNE_CHUNK):
            reply: Reply[list[tuple[str, str]]] = Reply()
            chunk = tuple(ids[start : start + PRUNE_CHUNK])
            await self._persistence.submit(RetryAllDead(ids=chunk, reply=reply))
            retried += len(await reply.wait())
        return retried

    async def list_jobs(
        self,
        status: JobStatus | str | None = None,
        name: str | None = None,
        limit: int = 100,
    ) -> list[Job]:
        """Return up to *limit* jobs, the newest first.

        Args:
            status: Only jobs that :meth:`status` would report with it.
            name: Only jobs of this name.
            limit: The number of jobs returned at most.
        """
        self._check_usable()
        if status is not None:
            status = to_status(status)
        if not isinstance(limit, int) or isinstance(limit, bool) or limit < 1:
            raise ValueError(f"limit must be a positive int, got {limit!r}")
        now = self._clock.now_us()
        rows = self._store.list_jobs(
            None if status is None else status.value, name, limit, now
        )
        return [job_from_row(row, now) for row in rows]

    async def purge(
        self,
        status: JobStatus | str,
        older_than: timedelta | float,
        *,
        dry_run: bool = False,
    ) -> int:
        """Delete completed or dead jobs that finished over *older_than* ago.

        Deletes in chunks, one transaction each, so a large purge neither
        holds the write lock nor blocks the event loop for long.

        Args:
            dry_run: Delete nothing, and count the jobs that would be
                deleted.

        Returns:
            How many jobs were deleted, or would be.

        Raises:
            ValueError: *status* is not COMPLETED or DEAD.
        """
        self._check_usable()
        check_flag(dry_run, name="dry_run")
        status = to_status(status)
        if status not in FINISHED_STATUSES:
            raise ValueError(
                f"purge() deletes only completed or dead jobs, not "
                f"{status.value} ones; pass JobStatus.COMPLETED or JobStatus.DEAD"
            )
        age = to_microseconds(to_duration(older_than, name="older_than"))
        before = self._clock.now_us() - age
        if dry_run:
            return self._store.count_finished_before(status.value, before)
        return await self._purge(status.value, before)

    async def _purge(self, status: str, before: int) -> int:
        deleted = 0
        while True:
            reply: Reply[int] = Reply()
            await self._persistence.submit(
                Purge(status=status, before=before, limit=PRUNE_CHUNK, reply=reply)
            )
            chunk = await reply.wait()
            deleted += chunk
            if chunk < PRUNE_CHUNK:
                return deleted
            await trio.lowlevel.checkpoint()

    async def wait(self, job_id: str) -> Job:
        """Wait until the job *job_id* is completed or dead, and return it.

        Raises:
            JobNotFound: No such job, or it was deleted while this call
                waited.
            PulseError: Nothing can finish the job: it is the job of the
                calling handler, or the queue is in memory and not running
                (an inline queue runs jobs only inside enqueue() and drain()).
        """
        self._check_usable()
        running = current_job_or_none()
        if running is not None and running.id == job_id:
            raise PulseError(
                f"wait() was called for job {job_id} ({running.name}) from its "
                "own handler; it would wait for itself forever"
            )
        changes = self._reporter.changes
        # Another process or queue may finish the job, so a file database is
        # also checked now and then (each virtual second under a MockClock,
        # where a finer poll would only burn real time).
        poll = math.inf
        if self._store.description != ":memory:":
            poll = MOCK_WAIT_POLL if self._clock.is_mock() else WAIT_POLL
        while True:
            generation = changes.value
            job = await self.status(job_id)
            if job.status in FINISHED_STATUSES:
                # Under synchronous="FULL" the row may show a commit that is
                # not yet synced, made here or by another process; syncing
                # the WAL file makes it durable before the job is returned.
                error = await self._persistence.sync_wal()
                if error is not None:
                    raise error
                return job
            self._check_can_finish(job)
            with trio.move_on_after(poll):
                await changes.wait_value(partial(ne, generation))

    def _check_can_finish(self, job: Job) -> None:
        """Raise PulseError if no queue can ever finish *job*."""
        if self._store.has_wal:
            return  # another process may run it
        if self._inline is not None:
            reason = (
                "an inline queue runs jobs only inside enqueue() and drain(); "
                "register its handler and call drain()"
            )
        elif self._state is _State.STOPPED:
            reason = "the in-memory queue has stopped; no other queue can run it"
        else:
            return
        raise PulseError(f"job {job.id} ({job.name}) is {job.status.value}: {reason}")

    async def drain(self, *, include_scheduled: bool = False) -> None:
        """Wait until no job is due or running, then return.

        Only jobs whose names have handlers here count. The queue must be
        running. With *include_scheduled*, also wait for jobs that are not
        yet due (scheduled, or retrying after a backoff); under a
        :class:`trio.testing.MockClock` with autojump, the clock then jumps
        ahead to each of them. On an inline queue it runs those jobs in the
        calling task instead.

        Raises:
            PulseError: The queue is not running, or drain() was called from
                a handler of this queue, whose own run would never end.
        """
        job = current_job_or_none()
        if job is not None and self._inline is None:
            raise PulseError(
                f"drain() was called from the handler of job {job.id} "
                f"({job.name}); it would wait for that run to end, forever. "
                "Call it from outside the queue's handlers"
            )
        if self._inline is not None:
            await self._inline.drain(include_scheduled)
            return
        changes = self._reporter.changes
        while True:
            if self._state is not _State.RUNNING or self._pool is None:
                raise PulseError(
                    f"drain() needs a running queue, and this one is "
                    f"{self._state.value}; start it with nursery.start(pulse.run) "
                    "or 'async with pulse:' first"
                )
            generation = changes.value
            if self._is_drained(include_scheduled):
                return
            await changes.wait_value(partial(ne, generation))

    def _is_drained(self, include_scheduled: bool) -> bool:
        assert self._pool is not None
        if self._pool.busy or not self._persistence.is_idle():
            return False
        names = self._registry.names()
        if self._store.has_ready(names):
            return False
        next_due = self._store.next_future_time_for(names)
        if next_due is None:
            return True
        # A future job whose time has come is due, although no claim has
        # promoted it to pending yet.
        return not include_scheduled and next_due > self._clock.now_us()

    # -- events and statistics -------------------------------------------

    def add_listener(self, callback: Listener) -> Callable[[], None]:
        """Call *callback* with a :class:`JobEvent` for each job event.

        Callbacks run on the event loop after the change they report has
        committed, and must return quickly; one that raises is logged and
        kept. Returns a function that removes the listener.
        """
        return self._listeners.add(callback)

    def statistics(self) -> PulseStatistics:
        """Return worker counts, job counts and totals since this queue opened."""
        self._check_usable()
        now = self._clock.now_us()
        waiting = self._store.count_waiting(now)
        finished = self._store.count_finished()
        busy = 0 if self._pool is None else self._pool.busy
        due = sum(jobs for (_, is_due), jobs in waiting.items() if is_due)
        return PulseStatistics(
            workers=self._workers,
            workers_busy=busy,
            workers_idle=(self._workers - busy) if self._pool is not None else 0,
            jobs_pending=due,
            jobs_scheduled=waiting.get(("scheduled", False), 0),
            jobs_running=self._store.count_running(),
            jobs_retrying=waiting.get(("retrying", False), 0),
            jobs_dead=finished.get("dead", 0),
            completed_since_start=self._reporter.completed,
            failed_since_start=self._reporter.failed,
        )

    async def summary(self) -> QueueSummary:
        """Return counts over the whole database, for monitoring."""
        self._check_usable()
        now = self._clock.now_us()
        stats = self.statistics()
        finished = self._store.count_finished()
        by_status = {
            JobStatus.PENDING: stats.jobs_pending,
            JobStatus.SCHEDULED: stats.jobs_scheduled,
            JobStatus.RUNNING: stats.jobs_running,
            JobStatus.RETRYING: stats.jobs_retrying,
            JobStatus.COMPLETED: finished.get("completed", 0),
            JobStatus.DEAD: finished.get("dead", 0),
        }
        per_priority = self._store.count_waiting_by_priority()
        oldest = self._store.oldest_due(now)
        minute, hour = now - 60_000_000, now - 3_600_000_000
        due_by_name = self._store.count_due_by_name(now)
        return QueueSummary(
            due_by_name=dict(sorted(due_by_name.items(), key=lambda item: -item[1])),
            queues=self._queues(now),
            by_status=by_status,
            waiting_by_priority={p: per_priority.get(int(p), 0) for p in JobPriority},
            oldest_due_at=None if oldest is None else from_microseconds(oldest),
            completed_last_minute=self._store.count_completed_since(minute),
            completed_last_hour=self._store.count_completed_since(hour),
            failed_last_minute=self._store.count_failed_since(minute),
            failed_last_hour=self._store.count_failed_since(hour),
        )

    def _queues(self, now: int) -> tuple[QueueInfo, ...]:
        running = self._store.count_running_by_owner()
        return tuple(
            QueueInfo(
                id=row["id"],
                host=row["host"],
                pid=row["pid"],
                started_at=from_microseconds(row["started_at"]),
                lease_until=from_microseconds(row["lease_until"]),
                alive=not owner_is_dead(row, now),
                handles=frozenset(json.loads(row["handles"] or "[]")),
                running=running.get(row["id"], 0),
            )
            for row in self._store.owners()
        )

    # -- running ---------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Process jobs until shut down.

        With ``await nursery.start(pulse.run)`` it reports started once the
        workers accept jobs. Cancelling it stops at once, as
        :meth:`shutdown_now` does: running jobs are cancelled and put back
        to pending without using up an attempt.
        """
        if self._inline is not None:
            raise PulseError(
                "an inline queue runs each job inside enqueue() and has no run(); "
                "open it with Pulse.in_memory() without inline=True to run workers"
            )
        self._check_usable()
        if self._shut_down_before_run:
            # A shutdown, say on a signal, came before this task started.
            logger.info("queue on %r was shut down before it ran", self.database)
            self._shut_down_before_run = False
            task_status.started()
            return
        if self._state is not _State.IDLE:
            raise PulseError(
                f"run() can start only once; this queue is {self._state.value}"
            )
        self._state = _State.RUNNING
        owner = self._owner = Owner.new()
        owner.mark_live()
        try:
            await self._run_actors(owner, task_status)
        except BaseExceptionGroup as group:
            # KeyboardInterrupt or SystemExit from a handler, or an error of
            # the queue itself, reaches here wrapped by the nurseries.
            bare = _bare_exception(group)
            if bare is None:
                raise
            raise bare from None
        finally:
            owner.mark_stopped()
            self._state = _State.STOPPED
            self._stopped.set()

    async def _run_actors(
        self, owner: Owner, task_status: trio.TaskStatus[None]
    ) -> None:
        async with trio.open_nursery() as outer:
            await outer.start(self._persistence.run)
            try:
                await self._serve(owner, task_status)
            finally:
                await self._remove_owner(owner)
                self._persistence.close()

    async def _serve(self, owner: Owner, task_status: trio.TaskStatus[None]) -> None:
        if self._shared:
            await self._renew_lease(owner)
            await self._recover_orphans(owner)
        if not self._registry.names():
            # Not a warning: handlers may be registered on a running queue,
            # and due jobs of a name with no handler get their own warning.
            logger.info(
                "run() started with no handlers registered; jobs start once "
                "Pulse.handle() registers one"
            )
        pool = self._pool = WorkerPool(self._reporter.changes)
        for index in range(self._workers):
            pool.add(
                Worker(
                    index,
                    self._registry,
                    self._persistence,
                    self._reporter,
                    self._clock,
                    pool,
                )
            )
        dispatcher = self._dispatcher = Dispatcher(
            self._store,
            self._persistence,
            self._registry,
            pool,
            owner.id,
            self._wakeups,
        )
        scheduler = Scheduler(
            self._store,
            self._persistence,
            dispatcher,
            self._registry,
            self._clock,
            self._wakeups,
            watch_other_processes=self._store.description != ":memory:",
        )
        if self._state is not _State.RUNNING:
            # A shutdown was requested while run() was starting.
            dispatcher.close()
        self._persistence.claimer = dispatcher
        try:
            await self._run_crew(owner, pool, scheduler, task_status)
        finally:
            dispatcher.close()
            self._persistence.claimer = None
        logger.info("queue on %r stopped", self.database)

    async def _run_crew(
        self,
        owner: Owner,
        pool: WorkerPool,
        scheduler: Scheduler,
        task_status: trio.TaskStatus[None],
    ) -> None:
        async with trio.open_nursery() as lease_nursery:
            if self._shared:
                lease_nursery.start_soon(self._keep_lease, owner)
            if self._keep_completed is not None:
                lease_nursery.start_soon(self._prune_completed, self._keep_completed)
            async with trio.open_nursery() as crew:
                self._crew_scope = crew.cancel_scope
                for worker in pool.workers:
                    crew.start_soon(worker.run)
                async with trio.open_nursery() as scheduling:
                    scheduling.start_soon(scheduler.run)
                    logger.info(
                        "queue on %r started (workers: %d) for jobs %s",
                        self.database,
                        self._workers,
                        sorted(self._registry.names()),
                    )
                    task_status.started()
                    await self._stop_requested.wait()
                    scheduling.cancel_scope.cancel()
                self._stop_crew(crew.cancel_scope, pool)
            lease_nursery.cancel_scope.cancel()

    def _stop_crew(self, scope: trio.CancelScope, pool: WorkerPool) -> None:
        # The dispatcher closed when the stop was requested, so no job is
        # claimed from here on.
        pool.close_inboxes()
        self._crew_stopping = True
        if self._stop_now:
            scope.cancel()
        else:
            scope.deadline = self._stop_deadline

    async def shutdown_graceful(
        self,
        timeout: timedelta | float | None = None,  # noqa: ASYNC109 - grace period
    ) -> None:
        """Stop taking jobs, let running ones finish, and wait for :meth:`run`.

        New enqueues raise :exc:`QueueClosed` from now on. Pending jobs stay
        pending in the database.

        Args:
            timeout: If given, jobs still running after it are cancelled and
                go back to pending without using up an attempt.
        """
        seconds = (
            None
            if timeout is None
            else to_duration(timeout, name="timeout").total_seconds()
        )
        await self._shutdown(now=False, grace=seconds)

    async def shutdown_now(self) -> None:
        """Cancel running jobs and wait for :meth:`run` to return.

        The cancelled jobs go back to pending without using up an attempt,
        so they run again when a queue next starts on this database.
        """
        await self._shutdown(now=True, grace=None)

    async def _shutdown(self, *, now: bool, grace: float | None) -> None:
        if self._state is _State.IDLE:
            self._state = _State.STOPPED
            self._shut_down_before_run = True
            self._stopped.set()
            return
        if self._state is _State.RUNNING:
            self._state = _State.STOPPING
        if self._dispatcher is not None:
            self._dispatcher.close()
        if grace is not None:
            # A later call may shorten the grace period of one in progress.
            deadline = trio.current_time() + grace
            self._stop_deadline = min(self._stop_deadline, deadline)
            if self._crew_stopping and self._crew_scope is not None:
                self._crew_scope.deadline = min(self._crew_scope.deadline, deadline)
        if now:
            self._stop_now = True
            if self._crew_scope is not None:
                self._crew_scope.cancel()
        self._stop_requested.set()
        if current_job_or_none() is not None:
            # Called from a handler: run() waits for that handler to return,
            # so waiting here would never end.
            return
        await self._stopped.wait()

    @asynccontextmanager
    async def _running(self) -> AsyncIterator[Pulse]:
        # An error of the block is caught inside the nursery and raised
        # again outside it, so it reaches the caller bare, not in a group.
        body_error: BaseException | None = None
        async with trio.open_nursery() as nursery:
            await nursery.start(self.run)
            try:
                yield self
            except BaseException as exc:  # noqa: BLE001 - raised again below
                body_error = exc
            with trio.CancelScope(shield=True):
                if body_error is not None and not isinstance(body_error, Exception):
                    # A cancelled or interrupted block (Ctrl-C, SystemExit)
                    # must not wait for running jobs.
                    await self.shutdown_now()
                else:
                    await self.shutdown_graceful()
        if body_error is not None:
            raise body_error

    async def __aenter__(self) -> Pulse:
        """Run the queue in the background for the ``async with`` block."""
        self._context = self._running()
        try:
            return await self._context.__aenter__()
        except BaseExceptionGroup as group:
            # A queue that cannot start raises inside the nursery of
            # _running(); the caller gets the error bare, as from run().
            bare = _bare_exception(group)
            if bare is None:
                raise
            raise bare from None

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        """Shut down gracefully: wait for running jobs, then return."""
        context, self._context = self._context, None
        assert context is not None, "__aexit__ without __aenter__"
        try:
            return await context.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The nursery of _running() wraps what run() raised; unwrap it
            # as run() itself does.
            bare = _bare_exception(group)
            if bare is None:
                raise
            raise bare from None

    # -- lease -----------------------------------------------------------

    async def _renew_lease(self, owner: Owner) -> None:
        lease_until = self._clock.now_us() + to_microseconds(self._lease)
        reply: Reply[None] = Reply()
        await self._persistence.submit(
            RenewLease(
                owner=owner,
                lease_until=lease_until,
                handles=tuple(self._registry.names()),
                reply=reply,
            )
        )
        await reply.wait()

    async def _recover_orphans(self, owner: Owner) -> None:
        reply: Reply[list[Any]] = Reply()
        await self._persistence.submit(RecoverOrphans(own_id=owner.id, reply=reply))
        await reply.wait()

    async def recover(self) -> list[str]:
        """Put back the running jobs of queues that are dead, now, and return
        their ids.

        Running queues do this when they start and every lease/3, so this
        serves a database on which no queue runs, such as after a worker
        was killed. The jobs become due again, or dead if that run was
        their last attempt, and no worker starts to run them.
        A queue counts as dead as in :class:`QueueInfo`: on this host when
        its process is gone, elsewhere when its lease has expired.
        """
        self._check_usable()
        reply: Reply[list[Any]] = Reply()
        if self._owner is not None:
            own_id = self._owner.id
        elif self._inline is not None:
            # A handler of an inline queue may call this while its job runs.
            own_id = self._inline.owner_id
        else:
            own_id = ""
        await self._persistence.submit(RecoverOrphans(own_id=own_id, reply=reply))
        return [job.id for job, _ in await reply.wait()]

    async def _keep_lease(self, owner: Owner) -> None:
        """Renew this queue's lease and recover the jobs of dead owners."""
        interval = self._lease.total_seconds() / 3
        while True:
            await trio.sleep(interval)
            try:
                await self._renew_lease(owner)
                await self._recover_orphans(owner)
            except PulseError as exc:
                logger.error(
                    "renewing the lease of this queue failed: %s", exc, exc_info=exc
                )

    async def _prune_completed(self, keep: timedelta) -> None:
        """Delete completed jobs older than *keep*, once a minute."""
        while True:
            before = self._clock.now_us() - to_microseconds(keep)
            try:
                deleted = await self._purge("completed", before)
            except PulseError as exc:
                logger.error(
                    "deleting old completed jobs failed: %s", exc, exc_info=exc
                )
            else:
                if deleted:
                    logger.info(
                        "deleted %d completed jobs older than %s", deleted, keep
                    )
            await trio.sleep(PRUNE_INTERVAL)

    async def _remove_owner(self, owner: Owner) -> None:
        if not self._shared:
            return
        reply: Reply[None] = Reply()
        with trio.move_on_after(OWNER_WRITE_TIMEOUT, shield=True):
            try:
                await self._persistence.submit(
                    RemoveOwner(owner_id=owner.id, reply=reply)
                )
                await reply.wait()
            except PulseError as exc:
                logger.error("removing the owner record of this queue failed: %s", exc)


async def _open_file_store(
    path: str | os.PathLike[str], synchronous: Synchronous, create: bool
) -> Store:
    """Open the store at *path*, sleeping between tries while it is locked.

    Each try blocks the event loop for at most the connection's short busy
    timeout, so a long lock held by another process costs only sleeps.
    """
    # Real time, as for the retries of a batch: see Persistence._commit.
    deadline = time.monotonic() + OPEN_BUSY_LIMIT
    delay = 0.001
    while True:
        try:
            return Store.open_file(path, synchronous, create=create)
        except StoreBusy as exc:
            if time.monotonic() >= deadline:
                raise DatabaseError(
                    f"cannot open database {os.fspath(path)!r}: another "
                    f"connection kept it locked for {OPEN_BUSY_LIMIT:g} s ({exc}); "
                    "retry once the program holding the lock has finished"
                ) from exc
            await trio.sleep(delay)
            delay = min(delay * 2, 0.05)


def _bare_exception(group: BaseExceptionGroup) -> BaseException | None:
    """Return the exception that *group* carries for the caller, if any.

    The nurseries of the queue wrap what its tasks raise. A group that holds
    only cancellations besides a ``KeyboardInterrupt`` or ``SystemExit``, or
    besides one error of pulse-trio's own (a database that failed, a queue
    that cannot run), stands for that one exception, which the caller
    expects bare.
    """
    leaves = [
        leaf for leaf in leaf_exceptions(group) if not isinstance(leaf, trio.Cancelled)
    ]
    if leaves and all(
        isinstance(leaf, (KeyboardInterrupt, SystemExit)) for leaf in leaves
    ):
        return leaves[0]
    if len(leaves) == 1 and isinstance(leaves[0], PulseError):
        return leaves[0]
    return None
