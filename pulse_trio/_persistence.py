"""The persistence actor: the one task that writes to SQLite.

It takes every request waiting in its channel, applies them in one
transaction with a savepoint each, commits once, then replies. So a hundred
concurrent enqueues cost one commit (group commit), and a request that
fails rolls back alone. A commit that fails (disk full, I/O error) fails
every request of its batch, and nothing of the batch is stored.
"""

from __future__ import annotations

import json
import logging
import math
import sqlite3
from collections.abc import Callable
from typing import Any

import attrs
import trio

from ._clock import WallClock
from ._config import JobConfig
from ._errors import DatabaseError, JobNotDead, JobNotFound, PulseError
from ._job import config_from_row
from ._messages import (
    Claim,
    ClaimedJob,
    Complete,
    Fail,
    Insert,
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
from ._store import Row, Store, is_busy

logger = logging.getLogger(__name__)

MAX_BATCH = 256
"""Maximum requests applied in one transaction.

One batch runs in one step of the event loop, so this bounds how long the
loop is blocked: at the 15-40 µs per request that the benchmarks measured
on a 2-core VM, up to about 10 ms (an estimate, not a guarantee)."""

BUSY_RETRY_LIMIT = 30.0
"""Seconds a batch keeps retrying while another process holds the lock."""

RESULT_RETRY_PAUSE = 1.0
"""Seconds between two tries to record job results whose write failed."""


@attrs.frozen
class FailOutcome:
    """Outcome of a failed run: ``retrying`` (with its due time) or ``dead``."""

    status: str
    run_at: int
    error: str = ""


OnCommit = Callable[[Message, Any], None]

SINGLE_STATEMENT = (Claim, Complete, Fail, Release, RenewLease, RemoveOwner, Purge)
"""Requests that run one SQL statement, so they need no savepoint."""


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


def failure_outcome(attempt: int, config: JobConfig, now: int) -> FailOutcome:
    """Apply the retry rule: after failed run *attempt*, retry or die."""
    if attempt > config.max_retries:
        return FailOutcome(status="dead", run_at=now)
    return FailOutcome(status="retrying", run_at=now + config.backoff_us(attempt))


def _error_entry(attempt: int, error: str, traceback: str, now: int) -> str:
    return json.dumps(
        {"attempt": attempt, "error": error, "traceback": traceback, "failed_at": now}
    )


@attrs.define(eq=False)
class Persistence:
    """Applies requests to the store in batches, one commit per batch."""

    store: Store
    clock: WallClock
    on_commit: OnCommit
    _send: trio.MemorySendChannel[Message] = attrs.field(init=False)
    _receive: trio.MemoryReceiveChannel[Message] = attrs.field(init=False)
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

    def __attrs_post_init__(self) -> None:
        self._send, self._receive = trio.open_memory_channel(math.inf)

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
        await self._commit([message])

    def submit_nowait(self, message: Message) -> None:
        """Queue *message* for the running actor without waiting."""
        self._send.send_nowait(message)
        self._in_flight += 1

    def is_idle(self) -> bool:
        """Tell whether every request sent so far has been applied."""
        return self._in_flight == 0 and not self._unrecorded

    def close(self) -> None:
        """Let the actor finish the queued requests, then return."""
        self._send.close()

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
                while True:
                    first: Message | None = None
                    with trio.move_on_at(self._retry_at):
                        try:
                            first = await self._receive.receive()
                        except trio.EndOfChannel:
                            break
                    if first is not None:
                        await self._commit_from(first)
                    if trio.current_time() >= self._retry_at:
                        await self._retry_unrecorded()
                self._closing = True
                await self._retry_unrecorded()
        finally:
            self.running = False

    async def _commit_from(self, first: Message) -> None:
        # One pass of the run queue lets the tasks that are ready send their
        # requests too, so they share this commit.
        await trio.lowlevel.cancel_shielded_checkpoint()
        batch = [first]
        while len(batch) < MAX_BATCH:
            try:
                batch.append(self._receive.receive_nowait())
            except (trio.WouldBlock, trio.EndOfChannel):
                break
        await self._commit(batch, counted=True)

    async def _retry_unrecorded(self) -> None:
        batch: list[Message] = list(self._unrecorded)
        self._unrecorded.clear()
        self._retry_at = math.inf
        if batch:
            await self._commit(batch, retrying=True)

    async def _commit(
        self, batch: list[Message], *, counted: bool = False, retrying: bool = False
    ) -> None:
        """Apply *batch*, retrying while another process holds the lock.

        With *counted*, the batch came through the channel and leaves the
        in-flight count before any reply is sent, so a task woken by a reply
        already sees the actor idle.
        """
        deadline = trio.current_time() + BUSY_RETRY_LIMIT
        delay = 0.001
        outcomes: list[tuple[Message, Any, Exception | None]] | None = None
        failure: sqlite3.Error | None = None
        while outcomes is None and failure is None:
            try:
                outcomes = self._execute(batch)
            except sqlite3.OperationalError as exc:
                if not is_busy(exc) or trio.current_time() > deadline:
                    failure = exc
                else:
                    await trio.sleep(delay)
                    delay = min(delay * 2, 0.05)
            except sqlite3.DatabaseError as exc:
                failure = exc
        if counted:
            self._in_flight -= len(batch)
        if failure is not None:
            self._fail_batch(batch, failure, retrying=retrying)
            return
        assert outcomes is not None
        for message, result, error in outcomes:
            self._finish(message, result, error)

    def _execute(
        self, batch: list[Message]
    ) -> list[tuple[Message, Any, Exception | None]]:
        now = self.clock.now_us()
        outcomes: list[tuple[Message, Any, Exception | None]] = []
        with self.store.write():
            for message in batch:
                try:
                    outcomes.append((message, self._apply_one(message, now), None))
                except sqlite3.OperationalError:
                    raise
                except Exception as exc:  # noqa: BLE001 - goes to its sender
                    outcomes.append((message, None, exc))
        return outcomes

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
        self.on_commit(message, result)

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
            case Insert(rows=rows):
                self.store.insert(rows)
                return None
            case Claim():
                return self._claim(message, now)
            case Complete(job=job):
                return self.store.complete(job.id, job.owner, job.attempt, now)
            case Fail():
                return self._fail(message, now)
            case Release(job=job):
                return self.store.release(job.id, job.owner, job.attempt)
            case RetryDead(job_id=job_id):
                return self._retry_dead(job_id, now)
            case RenewLease(owner=owner, lease_until=lease_until):
                self.store.upsert_owner(
                    {**attrs.asdict(owner), "now": now, "lease_until": lease_until}
                )
                return None
            case RecoverOrphans(own_id=own_id):
                return self._recover(own_id, now)
            case RemoveOwner(owner_id=owner_id):
                self.store.delete_owner(owner_id)
                return None
            case Purge(status=status, before=before, limit=limit):
                return self.store.purge(status, before, limit)
            case RetryAllDead(name=name, limit=limit):
                return [
                    (row["id"], row["name"])
                    for row in self.store.retry_all_dead(name, now, limit)
                ]

    def _claim(self, message: Claim, now: int) -> list[ClaimedJob]:
        if not message.names or message.limit <= 0:
            return []
        rows = self.store.claim(message.names, message.limit, now, message.owner)
        return [claimed_job(row, message.owner) for row in rows]

    def _fail(self, message: Fail, now: int) -> FailOutcome | None:
        job = message.job
        outcome = failure_outcome(job.attempt, job.config, now)
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
        for row in self.store.unused_owners(now):
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
