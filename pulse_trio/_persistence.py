"""The persistence actor: the one task that writes to SQLite.

It takes every request waiting in its channel, applies them in one
transaction with a savepoint each, commits once, then replies. So a hundred
concurrent enqueues cost one commit (group commit), and a request that
fails rolls back alone. A commit that fails (disk full, I/O error) fails
every request of its batch, and nothing of the batch is stored.
"""

from __future__ import annotations

import collections
import itertools
import json
import logging
import math
import sqlite3
import time
from typing import Any, Protocol

import attrs
import trio

from ._clock import WallClock, autojump_paused
from ._config import JobConfig
from ._errors import (
    DatabaseError,
    JobNotDead,
    JobNotFound,
    JobRunning,
    PulseError,
    is_no_retry,
)
from ._job import config_from_row
from ._messages import (
    Claim,
    ClaimDue,
    ClaimedJob,
    Complete,
    Delete,
    DeleteMatching,
    Fail,
    Insert,
    Mailbox,
    Message,
    Purge,
    RecoverOrphans,
    Release,
    RemoveOwner,
    RenewLease,
    RetryAllDead,
    RetryDead,
)
from ._owner import owner_is_dead
from ._report import Reporter
from ._store import Row, Store, is_busy

logger = logging.getLogger(__name__)

MAX_BATCH = 1000
"""Maximum requests applied in one transaction."""

BATCH_TIME_BUDGET = 0.003
"""Seconds of real time after which a batch stops taking more requests.

One batch runs in one step of the event loop, so this bounds how long the
loop is blocked, together with the time of the last request and of the
commit. The requests left over go first into the next batch."""

BUSY_RETRY_LIMIT = 30.0
"""Seconds a batch keeps retrying while another process holds the lock."""

CHECKPOINT_FRAMES = 4096
"""Pages that the WAL file collects between two checkpoints while the actor
runs: 16 MiB with SQLite's 4 KiB pages.

The checkpoints run in a worker thread, because one that copies and syncs
megabytes would otherwise block the event loop for several milliseconds,
as SQLite's own checkpoint at commit does. Each one costs two syncs and a
pause of the actor, so they are rarer than SQLite's default of one every
1,000 pages: at one every 200 commits (about 600 pages) a single task
awaiting each enqueue lost a third of its throughput, at one every 3,000
commits nothing measurable (100,000 enqueues on a 2-core VM).
"""

FIRST_CHECKPOINT = 1000
"""Commits before the first checkpoint, which measures how many pages a
commit adds and so spaces the next ones."""

SYNC_DELAY = 0.005
"""Seconds that a sync of the WAL file under ``synchronous="FULL"`` may
wait for more commits when no task waits for it.

It bounds how late the completion of a run is reported, and lets the
results of many runs share one sync."""

RESULT_RETRY_PAUSE = 1.0
"""Seconds between two tries to record job results whose write failed."""


@attrs.frozen
class FailOutcome:
    """Outcome of a failed run: ``retrying`` (with its due time) or ``dead``."""

    status: str
    run_at: int
    error: str = ""


SINGLE_STATEMENT = (
    ClaimDue,
    Delete,
    Complete,
    Fail,
    Release,
    RenewLease,
    RemoveOwner,
    Purge,
)
"""Requests that run at most one SQL statement, so they need no savepoint."""


Outcome = tuple[Message, Any, Exception | None]
"""A request, its result, and the error it raised if it failed."""


def _has_reply(message: Message) -> bool:
    return getattr(message, "reply", None) is not None


MAX_INSERT_RUN = 1000
"""Rows stored by one statement when several inserts are merged."""


def _insert_run(batch: list[Message], start: int) -> list[Insert]:
    """Return the inserts that follow each other in *batch* from *start*, up
    to :data:`MAX_INSERT_RUN` rows."""
    run: list[Insert] = []
    rows = 0
    for message in itertools.islice(batch, start, None):
        if not isinstance(message, Insert) or (run and rows >= MAX_INSERT_RUN):
            break
        run.append(message)
        rows += len(message.rows)
    return run


@attrs.define
class _DirectGroup:
    """Requests of callers that write by themselves and share one commit.

    *done* is set once the caller that took the requests is done with
    them. *handed_back* lists those it did not apply, because it was
    cancelled or failed first: their callers try again by themselves."""

    messages: list[Message]
    handed_back: list[Message] = attrs.field(factory=list)
    done: trio.Event = attrs.field(factory=trio.Event)


@attrs.define
class _BatchResult:
    """The result of one transaction: each request's outcome and the claim."""

    outcomes: list[tuple[Message, Any, Exception | None]] = attrs.field(factory=list)
    claimed: list[ClaimedJob] = attrs.field(factory=list)
    requested: int = 0


def claimed_job(row: Row, owner: str) -> ClaimedJob:
    return ClaimedJob(
        id=row["id"],
        name=row["name"],
        payload=row["payload"],
        attempt=row["attempts"],
        config=config_from_row(row),
        owner=owner,
        seq=row["seq"],
    )


def failure_outcome(
    attempt: int, config: JobConfig, now: int, *, final: bool = False
) -> FailOutcome:
    """Apply the retry rule: after failed run *attempt*, retry or die. A
    *final* failure dies at once."""
    if final or attempt > config.max_retries:
        return FailOutcome(status="dead", run_at=now)
    return FailOutcome(status="retrying", run_at=now + config.backoff_us(attempt))


def _error_entry(attempt: int, error: str, traceback: str, now: int) -> str:
    return json.dumps(
        {"attempt": attempt, "error": error, "traceback": traceback, "failed_at": now}
    )


class Claimer(Protocol):
    """Claims due jobs for idle workers inside a batch's transaction."""

    def can_claim(self) -> bool:
        """Tell whether a claim may find jobs and has workers to give them."""

    def claim(self, now: int) -> tuple[list[ClaimedJob], int]:
        """Claim due jobs; return them and how many were asked for."""

    def dispatch(self, jobs: list[ClaimedJob], requested: int) -> None:
        """Hand the jobs of a committed claim to idle workers."""

    def want(self) -> None:
        """Note that jobs may have come due."""

    def pause(self, error: Exception) -> None:
        """Stop claiming for a while after a claim failed with *error*."""


@attrs.define(eq=False)
class Persistence:
    """Applies requests to the store in batches, one commit per batch.

    While the queue runs, each batch also claims due jobs for the idle
    workers (see :class:`Claimer`), so finishing a job and claiming the next
    share one commit.
    """

    store: Store
    clock: WallClock
    reporter: Reporter
    claimer: Claimer | None = attrs.field(default=None, init=False)
    _mailbox: Mailbox[Message] = attrs.field(factory=Mailbox, init=False)
    # Requests taken from the channel but not yet applied, because the
    # batch before them used up its time.
    _backlog: collections.deque[Message] = attrs.field(
        factory=collections.deque, init=False
    )
    running: bool = attrs.field(default=False, init=False)
    # Requests sent but not yet applied. The channel's buffer cannot tell,
    # because trio hands a message straight to a waiting receiver.
    _in_flight: int = attrs.field(default=0, init=False)
    # Results of finished runs whose write failed (disk full, I/O error).
    # Without a retry their jobs would stay running until this process
    # ends, because recovery never takes the jobs of a live owner.
    _unrecorded: list[Complete | Fail] = attrs.field(factory=list, init=False)
    _retry_at: float = attrs.field(default=math.inf, init=False)
    _closing: bool = attrs.field(default=False, init=False)
    # Under synchronous=FULL: outcomes of committed requests that wait for
    # the WAL file to be synced before they are reported, and how many
    # outcomes a sync in progress covers.
    _unsynced: list[Outcome] = attrs.field(factory=list, init=False)
    _syncing: int = attrs.field(default=0, init=False)
    _sync_needed: trio.Event = attrs.field(factory=trio.Event, init=False)
    # Set when a task waits for a sync: a request with a reply.
    _sync_urgent: trio.Event = attrs.field(factory=trio.Event, init=False)
    _sync_done: bool = attrs.field(default=False, init=False)
    # The commits of this connection and the data version of the file when
    # the last successful sync started.
    _synced_mark: tuple[int, int] = attrs.field(default=(-1, -1), init=False)
    # Transactions committed.
    _committed: int = attrs.field(default=0, init=False)
    _checkpoint_at: int = attrs.field(factory=lambda: FIRST_CHECKPOINT, init=False)
    _checkpointed_at: int = attrs.field(default=0, init=False)
    # The queue's own threads, for syncs and checkpoints. They do not share
    # trio's default limiter with handler threads: 40 blocked handlers
    # would otherwise hold every reply back, or deadlock handlers that wait
    # for an enqueue.
    _threads: trio.CapacityLimiter = attrs.field(
        factory=lambda: trio.CapacityLimiter(2), init=False
    )
    # Held by a caller that writes by itself (no actor runs) for its commit
    # and, when one is due, the checkpoint after it.
    _direct: trio.Lock = attrs.field(factory=trio.Lock, init=False)
    # The requests of such callers that wait for the next direct commit.
    _direct_group: _DirectGroup | None = attrs.field(default=None, init=False)

    # -- sending ---------------------------------------------------------

    async def submit(self, message: Message) -> None:
        """Queue *message* for the actor, or apply it at once when the actor
        is not running (a queue that only enqueues never starts it)."""
        if self.running:
            try:
                self.submit_nowait(message)
                return
            except trio.ClosedResourceError:
                pass  # the actor is finishing; this task writes by itself
        while (group := self._direct_group) is not None:
            # Another caller is about to commit, so this request joins it.
            group.messages.append(message)
            await group.done.wait()
            if not any(other is message for other in group.handed_back):
                return
            # That caller stopped before it applied this request: try again.
        await self._lead_direct(_DirectGroup([message]))

    async def _lead_direct(self, group: _DirectGroup) -> None:
        """Commit the requests of *group*, of this caller and of those that
        join it until this caller holds the lock, then reply once they are
        durable.

        If this caller is cancelled or fails before a request of another
        caller is applied, that request goes back to its caller, which
        tries again by itself.
        """
        self._direct_group = group
        try:
            # Acquiring lets the other tasks of this step of the event loop
            # run, so that their requests join the group.
            await self._direct.acquire()
        except BaseException:
            if self._direct_group is group:
                self._direct_group = None
            group.handed_back = group.messages
            group.done.set()
            raise
        if self._direct_group is group:
            self._direct_group = None
        try:
            await self._commit_direct(group)
        finally:
            group.done.set()

    async def _commit_direct(self, group: _DirectGroup) -> None:
        """Apply the requests of *group* in as few transactions as the time
        budget allows, release the lock, then settle the outcomes of those
        applied."""
        batch = list(group.messages)
        outcomes: list[Outcome] = []
        try:
            while batch:
                # Only the retries while another process holds the lock can
                # be cancelled, and a cancelled try applied nothing.
                processed, settled = await self._commit(batch, settle=False)
                outcomes += settled
                del batch[:processed]
                if batch:
                    await trio.lowlevel.cancel_shielded_checkpoint()
            if self.store.has_wal and self._committed >= self._checkpoint_at:
                with trio.CancelScope(shield=True):
                    await self._checkpoint()
        finally:
            self._direct.release()
            group.handed_back = batch
            if not outcomes:
                pass  # Nothing was committed.
            elif self.store.durable:
                # The sync runs in a thread: a cancellation must not leave
                # committed requests unreported.
                with trio.CancelScope(shield=True):
                    await self._settle(outcomes)
            else:
                await self._settle(outcomes)

    def try_submit_nowait(self, message: Message) -> bool:
        """Queue *message* for the running actor, and return whether it was
        queued; if not, :meth:`submit` applies it."""
        if not self.running:
            return False
        try:
            self.submit_nowait(message)
        except trio.ClosedResourceError:
            return False
        return True

    def submit_nowait(self, message: Message) -> None:
        """Queue *message* for the running actor without waiting."""
        self._mailbox.put(message)
        self._in_flight += 1

    def is_idle(self) -> bool:
        """Tell whether every request sent so far has been applied, and its
        outcome reported."""
        return (
            self._in_flight == 0
            and not self._unrecorded
            and not self._unsynced
            and not self._syncing
        )

    def close(self) -> None:
        """Let the actor finish the queued requests, then return."""
        self._mailbox.close()

    # -- the actor -------------------------------------------------------

    # KeyboardInterrupt must never land here: a dead persistence actor
    # would leave every task that waits for a reply hanging.
    @trio.lowlevel.enable_ki_protection
    async def run(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Serve requests until :meth:`close` is called.

        The loop is shielded from cancellation: when the queue is cancelled,
        workers still send the release of each interrupted job, and those
        writes must land, or the jobs would stay running until recovered.
        The loop ends once the channel is closed and empty, after one last
        try to record the results whose write failed.
        """
        self.running = True
        task_status.started()
        try:
            with trio.CancelScope(shield=True):
                async with trio.open_nursery() as nursery:
                    if self.store.durable:
                        nursery.start_soon(self._sync_loop)
                    await self._serve()
                    self._closing = True
                    await self._retry_unrecorded()
                    self._sync_done = True
                    self._sync_needed.set()
                    self._sync_urgent.set()
        finally:
            self.running = False

    async def _serve(self) -> None:
        while True:
            if self._committed >= self._checkpoint_at:
                await self._checkpoint()
            if not self._backlog:
                try:
                    await self._receive_next()
                except trio.EndOfChannel:
                    return
            if self._backlog:
                await self._commit_backlog()
            if trio.current_time() >= self._retry_at:
                await self._retry_unrecorded()

    async def _receive_next(self) -> None:
        """Wait for the next request, or until results are due a retry."""
        if self._retry_at == math.inf:
            # No deadline, so no cancel scope: it costs a few microseconds
            # per request.
            self._backlog.append(await self._mailbox.get())
            return
        with trio.move_on_at(self._retry_at):
            self._backlog.append(await self._mailbox.get())

    async def _commit_backlog(self) -> None:
        # Tasks that trio wakes together run in one batch of its run queue,
        # and the first request among them wakes this task for the next
        # batch, so by now they have all sent theirs and share this commit.
        while len(self._backlog) < MAX_BATCH:
            try:
                self._backlog.append(self._mailbox.get_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        batch = list(itertools.islice(self._backlog, MAX_BATCH))
        processed, _ = await self._commit(batch, counted=True)
        for _ in range(processed):
            self._backlog.popleft()

    async def _retry_unrecorded(self) -> None:
        batch: list[Message] = list(self._unrecorded)
        self._unrecorded.clear()
        self._retry_at = math.inf
        while batch:
            processed, _ = await self._commit(batch, retrying=True)
            del batch[:processed]

    async def _commit(
        self,
        batch: list[Message],
        *,
        counted: bool = False,
        retrying: bool = False,
        settle: bool = True,
    ) -> tuple[int, list[Outcome]]:
        """Apply the start of *batch* in one transaction, and return how
        many requests it processed and the outcomes of those it committed.

        It applies requests until :data:`BATCH_TIME_BUDGET` is used up, and
        at least one. It retries while another process holds the lock. When
        the write fails, it processes the whole batch by failing each
        request, and returns no outcome. With *counted*, the batch came through the
        channel and leaves the in-flight count before any reply is sent, so
        a task woken by a reply already finds the actor idle. With *settle*,
        it also replies and reports; else the caller settles the outcomes
        it returns.
        """
        # Real time, not trio's: the lock is held by another process, which
        # a MockClock's jumps do not hurry.
        deadline = time.monotonic() + BUSY_RETRY_LIMIT
        delay = 0.001
        result: _BatchResult | None = None
        failure: sqlite3.Error | None = None
        while result is None and failure is None:
            try:
                result = self._execute(batch)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or time.monotonic() > deadline:
                    failure = exc
                else:
                    await trio.sleep(delay)
                    delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as exc:
                failure = exc
        if failure is not None:
            if counted:
                self._in_flight -= len(batch)
            self._fail_batch(batch, failure, retrying=retrying)
            return len(batch), []
        assert result is not None
        self._committed += 1
        if counted:
            self._in_flight -= len(result.outcomes)
        if self.claimer is not None and result.requested:
            # A claimed job may start before its claim is synced: if the
            # claim is lost to a power failure, the job runs again.
            self.claimer.dispatch(result.claimed, result.requested)
        if settle:
            await self._settle(result.outcomes)
        return len(result.outcomes), result.outcomes

    async def _settle(self, outcomes: list[Outcome]) -> None:
        """Reply to and report committed requests once they are durable."""
        if not self.store.durable:
            self._deliver(outcomes)
        elif self.running and not self._sync_done:
            self._unsynced += outcomes
            self._sync_needed.set()
            if any(_has_reply(message) for message, _, _ in outcomes):
                self._sync_urgent.set()
        else:
            # No actor runs, or it is past its last sync (a request sent
            # while the queue stops): the caller itself waits for the sync.
            await self._sync(outcomes)

    def _deliver(self, outcomes: list[Outcome]) -> None:
        for message, value, error in outcomes:
            self._finish(message, value, error)
        self.reporter.batch_committed()

    # -- durability under synchronous=FULL --------------------------------

    @trio.lowlevel.enable_ki_protection
    async def _sync_loop(self) -> None:
        """Sync the WAL file after commits, and then report their outcomes.

        A sync starts at once when a task waits for it (a request with a
        reply), else up to :data:`SYNC_DELAY` after
        the first commit it covers, so that the results of many runs share
        one sync. While a sync runs in a thread, the actor goes on
        committing. The loop ends once the actor has stopped and every
        outcome is reported.
        """
        while True:
            if not self._unsynced:
                if self._sync_done:
                    return
                await self._sync_needed.wait()
                self._sync_needed = trio.Event()
                continue
            with trio.move_on_after(SYNC_DELAY):
                await self._sync_urgent.wait()
            self._sync_urgent = trio.Event()
            outcomes, self._unsynced = self._unsynced, []
            await self._sync(outcomes)

    async def _checkpoint(self) -> None:
        """Copy the WAL file into the database file, in a worker thread.

        The actor commits nothing meanwhile: SQLite starts the WAL file
        over only when a write begins after a checkpoint that copied every
        frame, and commits made during the checkpoint would keep it growing
        for ever. Requests wait in the mailbox, and share the next commit.
        """
        commits = self._committed - self._checkpointed_at
        self._checkpointed_at = self._committed
        self._checkpoint_at = self._committed + FIRST_CHECKPOINT
        try:
            with autojump_paused():
                frames = await trio.to_thread.run_sync(
                    self.store.checkpoint, limiter=self._threads
                )
            if frames > 0:
                per_commit = frames / max(commits, 1)
                interval = round(CHECKPOINT_FRAMES / per_commit)
                self._checkpoint_at = self._committed + min(max(interval, 50), 20_000)
        except sqlite3.Error as exc:
            # The next one tries again; the WAL file only grows meanwhile.
            logger.warning(
                "checkpoint of the WAL file of %r failed: %s",
                self.store.description,
                exc,
            )

    async def _sync(self, outcomes: list[Outcome]) -> None:
        count = len(outcomes)
        self._syncing += count
        try:
            error = await self.sync_wal()
        finally:
            self._syncing -= count
        if error is not None:
            outcomes = [
                (message, value, error if _has_reply(message) else failure)
                for message, value, failure in outcomes
            ]
            for message, _, _ in outcomes:
                job = getattr(message, "job", None)
                if job is not None:
                    logger.error(
                        "job %s (%s): its %s is committed but may not survive a "
                        "power loss: %s",
                        job.id,
                        job.name,
                        type(message).__name__.lower(),
                        error,
                        extra={"job_id": job.id, "job_name": job.name},
                    )
        self._deliver(outcomes)

    async def sync_wal(self) -> DatabaseError | None:
        """Sync the WAL file in a worker thread, making every commit so far
        durable, including those of other processes; return the error if
        the sync failed. Under ``synchronous="NORMAL"`` do nothing."""
        if not self.store.durable:
            return None
        # A sync covers the commits made before it starts. When no commit
        # was made since the last sync started, here or by another
        # connection, there is nothing to sync.
        mark = (self._committed, self.store.data_version())
        if mark == self._synced_mark:
            return None
        try:
            with autojump_paused():
                await trio.to_thread.run_sync(self.store.sync, limiter=self._threads)
        except OSError as exc:
            error = DatabaseError(
                f"syncing the WAL file of {self.store.description!r} failed, so "
                f"the last commits may not survive a power loss: {exc}"
            )
            error.__cause__ = exc
            logger.error("%s", error, exc_info=error)
            return error
        self._synced_mark = max(self._synced_mark, mark)
        return None

    def _execute(self, batch: list[Message]) -> _BatchResult:
        now = self.clock.now_us()
        started = time.perf_counter()
        result = _BatchResult()
        self.store.begin()
        try:
            while len(result.outcomes) < len(batch):
                first = batch[len(result.outcomes)]
                if isinstance(first, Insert):
                    inserts = _insert_run(batch, len(result.outcomes))
                    result.outcomes += self._apply_inserts(inserts, now)
                else:
                    result.outcomes.append(self._outcome_of(first, now))
                if time.perf_counter() - started > BATCH_TIME_BUDGET:
                    break
            if self.claimer is not None and self.claimer.can_claim():
                self._claim_for_workers(now, result)
            self.store.commit()
        except BaseException:
            self.store.rollback()
            raise
        return result

    def _claim_for_workers(self, now: int, result: _BatchResult) -> None:
        assert self.claimer is not None
        # No savepoint: the claim's statements are each atomic, and the one
        # before the claim, which makes jobs come due, is harmless alone.
        try:
            result.claimed, result.requested = self.claimer.claim(now)
        except sqlite3.OperationalError:
            raise
        except sqlite3.DatabaseError as exc:
            # A damaged index, for example: the other requests still commit.
            self.claimer.pause(exc)

    def _outcome_of(self, message: Message, now: int) -> Outcome:
        try:
            value = self._apply_one(message, now)
        except sqlite3.OperationalError:
            raise
        except Exception as exc:  # noqa: BLE001 - goes to its sender
            return (message, None, exc)
        return (message, value, None)

    def _apply_inserts(self, inserts: list[Insert], now: int) -> list[Outcome]:
        """Store the rows of consecutive inserts with one statement.

        Concurrent enqueues each send an insert of one row, and one
        executemany() for all of them costs less than one per request. If
        it fails, each request is applied alone, so that only the one at
        fault fails.
        """
        if len(inserts) == 1:
            return [self._outcome_of(inserts[0], now)]
        try:
            with self.store.savepoint():
                self.store.insert([row for insert in inserts for row in insert.rows])
        except sqlite3.OperationalError:
            raise
        except Exception:  # noqa: BLE001 - each sender gets its own error below
            return [self._outcome_of(insert, now) for insert in inserts]
        if any(insert.due_now for insert in inserts):
            self._want_claim()
        return [(insert, None, None) for insert in inserts]

    def _apply_one(self, message: Message, now: int) -> Any:
        # A request of one statement is undone by SQLite itself if that
        # statement fails; the others get a savepoint so that they fail whole.
        single = isinstance(message, SINGLE_STATEMENT) or (
            isinstance(message, Insert) and len(message.rows) == 1
        )
        if single:
            return self._apply(message, now)
        with self.store.savepoint():
            return self._apply(message, now)

    def _fail_batch(
        self, batch: list[Message], exc: sqlite3.Error, *, retrying: bool = False
    ) -> None:
        # Nothing of the batch was stored, so there is nothing to sync.
        error = DatabaseError(f"write to {self.store.description!r} failed: {exc}")
        error.__cause__ = exc
        for message in batch:
            keep = self.running and not self._closing
            if keep and isinstance(message, (Complete, Fail)):
                if not retrying:  # logged once per result, not at every try
                    self._report_error(message, error)
                    logger.warning(
                        "job %s (%s): trying again to record the result every %g s",
                        message.job.id,
                        message.job.name,
                        RESULT_RETRY_PAUSE,
                        extra={"job_id": message.job.id, "job_name": message.job.name},
                    )
                self._unrecorded.append(message)
                self._retry_at = min(
                    self._retry_at, trio.current_time() + RESULT_RETRY_PAUSE
                )
            else:
                self._finish(message, None, error)

    def _finish(self, message: Message, result: Any, error: Exception | None) -> None:
        reply = getattr(message, "reply", None)
        if error is not None:
            self._report_error(message, error)
            if reply is not None:
                reply.fail(error)
            return
        if reply is not None:
            reply.set(result)
        self.reporter.report(message, result)

    def _report_error(self, message: Message, error: Exception) -> None:
        if isinstance(error, PulseError) and getattr(message, "reply", None):
            return  # the sender gets it and decides
        job = getattr(message, "job", None)
        if job is not None:
            logger.error(
                "job %s (%s): recording %s failed: %s",
                job.id,
                job.name,
                type(message).__name__.lower(),
                error,
                exc_info=error,
                extra={"job_id": job.id, "job_name": job.name},
            )
        elif getattr(message, "reply", None) is None:
            logger.error("request %r failed: %s", message, error, exc_info=error)

    # -- one function per request ----------------------------------------

    def _apply(self, message: Message, now: int) -> Any:
        match message:
            case Insert(rows=rows, due_now=due_now):
                self.store.insert(rows)
                if due_now:
                    self._want_claim()
                return None
            case ClaimDue():
                return None  # the claim runs at the end of every batch
            case Claim():
                return self._claim(message, now)
            case Complete(job=job):
                return self.store.complete(job.guard, now)
            case Fail():
                return self._fail(message, now)
            case Release(job=job):
                self._want_claim()
                return self.store.release(job.guard)
            case RetryDead(job_id=job_id):
                self._want_claim()
                return self._retry_dead(job_id, now)
            case Delete(job_id=job_id):
                return self._delete(job_id)
            case DeleteMatching(ids=ids, status=status):
                deleted = self.store.delete_ids(ids, status, now)
                return [(row["id"], row["name"], row["status"]) for row in deleted]
            case RenewLease(owner=owner, lease_until=lease_until, handles=handles):
                self.store.upsert_owner(
                    {
                        **attrs.asdict(owner),
                        "now": now,
                        "lease_until": lease_until,
                        "handles": json.dumps(sorted(handles)),
                    }
                )
                return None
            case RecoverOrphans(own_id=own_id):
                self._want_claim()
                return self._recover(own_id, now)
            case RemoveOwner(owner_id=owner_id):
                self.store.delete_owner(owner_id)
                return None
            case Purge(status=status, before=before, limit=limit):
                return self.store.purge(status, before, limit)
            case RetryAllDead(ids=ids):
                self._want_claim()
                return [
                    (row["id"], row["name"])
                    for row in self.store.retry_dead_ids(ids, now)
                ]

    def _want_claim(self) -> None:
        if self.claimer is not None:
            self.claimer.want()

    def _claim(self, message: Claim, now: int) -> list[ClaimedJob]:
        if not message.names or message.limit <= 0:
            return []
        self.store.promote_due(now, message.limit)
        rows = self.store.claim(message.names, message.limit, now, message.owner)
        return [claimed_job(row, message.owner) for row in rows]

    def _fail(self, message: Fail, now: int) -> FailOutcome | None:
        job = message.job
        final = is_no_retry(message.exception)
        outcome = failure_outcome(job.attempt, job.config, now, final=final)
        if outcome.status == "retrying" and outcome.run_at <= now:
            self._want_claim()
        recorded = self.store.fail(
            job.guard,
            {
                "status": outcome.status,
                "run_at": outcome.run_at,
                "finished_at": now if outcome.status == "dead" else None,
                "now": now,
                "error": message.error,
                "entry": _error_entry(
                    job.attempt, message.error, message.traceback, now
                ),
            },
        )
        return outcome if recorded else None

    def _retry_dead(self, job_id: str, now: int) -> tuple[str, str]:
        row = self.store.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        if not self.store.retry_dead(job_id, now):
            raise JobNotDead(job_id, row["status"])
        return job_id, row["name"]

    def _delete(self, job_id: str) -> tuple[str, str]:
        row = self.store.get(job_id)
        if row is None:
            raise JobNotFound(job_id)
        if not self.store.delete(job_id):
            raise JobRunning(job_id)
        return row["name"], row["status"]

    def _recover(self, own_id: str, now: int) -> list[tuple[ClaimedJob, FailOutcome]]:
        """Put back the running jobs of dead owners.

        The interrupted run counts as an attempt, so a job that kills its
        process ends dead after its retries rather than looping forever.
        """
        recovered = []
        for owner_id in self.store.running_owners():
            if owner_id == own_id or not owner_is_dead(self.store.owner(owner_id), now):
                continue
            for row in self.store.running_of_owner(owner_id):
                job = claimed_job(row, owner_id or "")
                recovered.append((job, self._recover_job(job, now)))
        # An expired lease alone does not prove an owner on this host dead
        # (the wall clock may have jumped), and a live owner whose record
        # was deleted would lose its next claimed jobs to recovery.
        for row in self.store.unused_owners():
            if owner_is_dead(row, now):
                self.store.delete_owner(row["id"])
        return recovered

    def _recover_job(self, job: ClaimedJob, now: int) -> FailOutcome:
        error = (
            f"WorkerLost: attempt {job.attempt} was interrupted because the "
            "process running it stopped without recording a result"
        )
        outcome = failure_outcome(job.attempt, job.config, now)
        # The run did not fail on its own, so it is due again at once.
        run_at = now if outcome.status == "retrying" else outcome.run_at
        outcome = FailOutcome(status=outcome.status, run_at=run_at, error=error)
        self.store.fail(
            job.guard,
            {
                "status": outcome.status,
                "run_at": outcome.run_at,
                "finished_at": now if outcome.status == "dead" else None,
                "now": now,
                "error": error,
                "entry": _error_entry(job.attempt, error, "", now),
            },
        )
        return outcome
