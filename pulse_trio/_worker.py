"""Worker actors: each runs one job at a time, handed to it by the scheduler."""

from __future__ import annotations

import collections
import json
import logging
import math
import traceback
from typing import Any

import attrs
import trio
from trio_util import AsyncValue

from ._clock import WallClock
from ._context import JobContext, enter_job, leave_job
from ._handlers import Registry
from ._job import from_microseconds
from ._messages import ClaimedJob, Complete, Fail, Release, Reply, Waiter
from ._persistence import Persistence
from ._report import Reporter

logger = logging.getLogger(__name__)

MAX_ERROR_CHARS = 4_000
"""Maximum length of the error stored for one failed run; the rest is cut."""

MAX_TRACEBACK_CHARS = 16_000
"""Maximum length of the traceback stored for one failed run; the middle
is cut."""

RELEASE_TIMEOUT = 5.0
"""Seconds a cancelled worker waits for the release of its job to commit."""


def must_propagate(exc: BaseException) -> bool:
    """Tell whether *exc* stops the queue rather than failing the job.

    Cancellation, ``KeyboardInterrupt`` and ``SystemExit`` propagate, also
    inside an exception group (a handler with its own nursery receives a
    shutdown as a group of ``Cancelled``). Every other exception, including
    ``GeneratorExit`` and other ``BaseException`` subclasses, fails the run.
    """
    if isinstance(exc, BaseExceptionGroup):
        return any(must_propagate(inner) for inner in exc.exceptions)
    return isinstance(exc, CONTROL_EXCEPTIONS)


CONTROL_EXCEPTIONS = (trio.Cancelled, KeyboardInterrupt, SystemExit)
"""Exceptions that stop the queue instead of failing the run."""


def split_control(
    exc: BaseException,
) -> tuple[BaseException, BaseExceptionGroup[Any] | None]:
    """Split *exc* into the control exceptions and the errors beside them.

    A handler's own nursery may raise a group that holds ``Cancelled`` and
    an error from cleanup code. Only the control part may propagate,
    because the error would otherwise crash the whole queue.
    """
    if not isinstance(exc, BaseExceptionGroup):
        return exc, None
    control, errors = exc.split(CONTROL_EXCEPTIONS)
    if errors is None or control is None:
        return exc, None
    return control, errors


def leaf_exceptions(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    """Return the exceptions inside *group* and its nested groups."""
    leaves: list[BaseException] = []
    for inner in group.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            leaves.extend(leaf_exceptions(inner))
        else:
            leaves.append(inner)
    return leaves


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception as inner:  # noqa: BLE001 - any str() failure is reported
        return f"<str() of the exception raised {type(inner).__name__}>"


def describe_error(exc: BaseException) -> str:
    """Return ``"Type: message"`` for *exc*, cut to :data:`MAX_ERROR_CHARS`."""
    text = f"{type(exc).__qualname__}: {_safe_str(exc)}"
    if len(text) > MAX_ERROR_CHARS:
        cut = len(text) - MAX_ERROR_CHARS
        text = f"{text[:MAX_ERROR_CHARS]}... [{cut} more characters cut]"
    return text


def format_traceback(exc: BaseException) -> str:
    """Return the traceback of *exc*, keeping its start and end if too long."""
    try:
        text = "".join(traceback.format_exception(exc))
    except Exception as inner:  # noqa: BLE001 - a broken __str__ must not lose the run
        text = f"<traceback could not be formatted: {type(inner).__name__}>"
    if len(text) <= MAX_TRACEBACK_CHARS:
        return text
    half = MAX_TRACEBACK_CHARS // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n... [{cut} characters cut] ...\n{text[-half:]}"


def _seconds(value: float) -> str:
    return f"{value:g} s"


@attrs.define(eq=False)
class WorkerPool:
    """The workers and which of them are idle.

    A job is claimed only for an idle worker. It is handed over in the same
    step of the event loop as the claim's commit, so a claimed job never
    waits in a queue where a shutdown could strand it as running.
    """

    changes: AsyncValue[int]
    """Counter raised whenever the last busy worker becomes idle."""
    workers: list[Worker] = attrs.field(factory=list)
    idle: collections.deque[Worker] = attrs.field(factory=collections.deque)

    def add(self, worker: Worker) -> None:
        self.workers.append(worker)
        self.idle.append(worker)

    def mark_idle(self, worker: Worker) -> None:
        self.idle.append(worker)
        if len(self.idle) == len(self.workers):
            self.changes.value += 1  # drain() waits for this

    def take_idle(self) -> Worker:
        """Remove and return the worker that has been idle longest."""
        return self.idle.popleft()

    def close_inboxes(self) -> None:
        for worker in self.workers:
            worker.close_inbox()

    @property
    def busy(self) -> int:
        return len(self.workers) - len(self.idle)


@attrs.define(eq=False)
class Inbox:
    """A worker's slot for its next job.

    It has room for one job, because jobs are handed only to idle workers.
    """

    job: ClaimedJob | None = None
    closed: bool = False
    _waiter: Waiter = attrs.field(factory=Waiter)

    def put(self, job: ClaimedJob) -> None:
        """Store *job* and wake the worker.

        Raises:
            trio.ClosedResourceError: The worker has stopped.
        """
        if self.closed:
            raise trio.ClosedResourceError("the worker has stopped")
        assert self.job is None, "a job was handed to a busy worker"
        self.job = job
        self._waiter.wake()

    async def get(self) -> ClaimedJob | None:
        """Wait for a job and return it, or ``None`` once closed and empty."""
        if self.job is None and not self.closed:
            # Cancelled: the worker stops, so it must not be handed a job.
            await self._waiter.wait(on_cancel=self._close_on_cancel)
        else:
            await trio.lowlevel.checkpoint()
        job, self.job = self.job, None
        return job

    def _close_on_cancel(self) -> None:
        self.closed = True

    def close(self) -> ClaimedJob | None:
        """Close the inbox, wake the worker, and return a job not yet taken."""
        self.closed = True
        self._waiter.wake()
        job, self.job = self.job, None
        return job


@attrs.define(eq=False)
class Worker:
    """Runs the jobs handed to its inbox, one at a time."""

    index: int
    registry: Registry
    persistence: Persistence
    reporter: Reporter
    clock: WallClock
    pool: WorkerPool
    _inbox: Inbox = attrs.field(factory=Inbox, init=False)
    _unstarted: list[ClaimedJob] = attrs.field(factory=list, init=False)

    def assign(self, job: ClaimedJob) -> None:
        """Hand *job* to this idle worker.

        Raises:
            trio.ClosedResourceError: The worker has stopped or is stopping.
        """
        self._inbox.put(job)

    def close_inbox(self) -> None:
        """Stop taking jobs; a job handed over but not yet started is released."""
        job = self._inbox.close()
        if job is not None:
            self._unstarted.append(job)

    async def run(self) -> None:
        """Run jobs until the inbox is closed, or until cancelled.

        One cancel scope serves many runs: its deadline is each run's time
        limit. Entering and leaving a scope per run cost more than any
        other step of a run of a no-op handler. A scope whose deadline has
        passed stays cancelled, so a new one follows it.
        """
        try:
            while True:
                with trio.CancelScope() as scope:
                    while (job := await self._inbox.get()) is not None:
                        await self._run_job(job, scope)
                        self.pool.mark_idle(self)
                        if scope.cancel_called:
                            break
                    else:
                        return
        finally:
            await self._release_unstarted()

    async def _release_unstarted(self) -> None:
        # Closing the inbox and taking what is left happen with no checkpoint
        # between them, so a later assign() fails and its caller releases.
        self.close_inbox()
        left, self._unstarted = self._unstarted, []
        for job in left:
            await release_job(self.persistence, job)

    # -- one run ---------------------------------------------------------

    async def _run_job(self, job: ClaimedJob, scope: trio.CancelScope) -> None:
        """Run *job* with *scope*'s deadline as its time limit, and submit
        its result."""
        handler = self.registry.get(job.name)
        # A shutdown cannot cancel a thread, so what a plain function raises
        # is its own failure, never a cleanup that replaced a Cancelled.
        handler_is_async = handler is not None and handler.is_async
        start = trio.current_time()
        token = enter_job(job_context(job, self.clock))
        timeout = job.config.timeout
        limit = None if timeout is None else timeout.total_seconds()
        scope.deadline = math.inf if limit is None else start + limit
        self.reporter.started(job)
        try:
            payload = decode_payload(job.payload)
            if handler is None:
                raise LookupError(f"no handler is registered for job {job.name!r}")
            await handler.call(payload)
        except BaseException as exc:
            duration = trio.current_time() - start
            # Read before any checkpoint: the deadline passed during the run.
            timed_out = scope.cancel_called
            scope.deadline = math.inf
            if timed_out:
                # Its own deadline cancelled the run, so every Cancelled is
                # that of the time limit. A shutdown at the same moment is a
                # Cancelled too; the run did exceed its limit.
                if _only_cancellations(exc):
                    self._fail_timeout(job, duration, limit, exc)
                    return
                exc = _without_cancellations(exc)
            if must_propagate(exc):
                await release_job(self.persistence, job)
                control, dropped = split_control(exc)
                if dropped is None:
                    raise exc from exc.__cause__
                self._log_dropped(job, dropped)
                raise control from None
            if not timed_out and handler_is_async and _cancelled_from_outside():
                # A shutdown cancelled the run, and the handler's cleanup
                # raised an error in place of the Cancelled. The run is put
                # back like any cancelled one; the worker stops at its next
                # checkpoint, where the cancellation is raised again.
                await release_job(self.persistence, job)
                self._log_dropped(job, exc)
                return
            if timed_out:
                # The timeout cancelled the handler, which then raised
                # something else while it cleaned up.
                text = timeout_text(job, duration, limit)
                prefix = f"{text}; while cancelled it raised "
                self._fail(job, duration, exc, prefix)
            else:
                self._fail(job, duration, exc)
        else:
            duration = trio.current_time() - start
            scope.deadline = math.inf
            if limit is not None and duration > limit:
                logger.warning(
                    "job %s (%s): ran %s, past its timeout of %s, and returned "
                    "(a handler in a thread cannot be interrupted, and an async "
                    "handler can catch the cancellation); recorded as completed",
                    job.id,
                    job.name,
                    _seconds(duration),
                    _seconds(limit),
                    extra={"job_id": job.id, "job_name": job.name},
                )
            self.persistence.submit_nowait(Complete(job=job, duration=duration))
        finally:
            leave_job(token)

    def _log_dropped(self, job: ClaimedJob, errors: BaseException) -> None:
        leaves = (
            leaf_exceptions(errors)
            if isinstance(errors, BaseExceptionGroup)
            else [errors]
        )
        logger.error(
            "job %s (%s): attempt %d raised errors while it was cancelled; the "
            "job is pending again and the errors are dropped: %s",
            job.id,
            job.name,
            job.attempt,
            "; ".join(describe_error(leaf) for leaf in leaves),
            exc_info=errors,
            extra={"job_id": job.id, "job_name": job.name},
        )

    def _fail(
        self, job: ClaimedJob, duration: float, exc: BaseException, prefix: str = ""
    ) -> None:
        self.persistence.submit_nowait(
            Fail(
                job=job,
                duration=duration,
                error=prefix + describe_error(exc),
                traceback=format_traceback(exc),
                exception=exc,
            )
        )

    def _fail_timeout(
        self,
        job: ClaimedJob,
        duration: float,
        limit: float | None,
        cancelled: BaseException,
    ) -> None:
        error = f"{timeout_text(job, duration, limit)} and was cancelled"
        # The cancellation's traceback ends where the handler was waiting.
        self.persistence.submit_nowait(
            Fail(
                job=job,
                duration=duration,
                error=error,
                traceback=format_traceback(cancelled),
                exception=None,
            )
        )


def _only_cancellations(exc: BaseException) -> bool:
    """Tell whether *exc* is a Cancelled, or a group of nothing else."""
    if isinstance(exc, BaseExceptionGroup):
        return all(_only_cancellations(inner) for inner in exc.exceptions)
    return isinstance(exc, trio.Cancelled)


def _without_cancellations(exc: BaseException) -> BaseException:
    """Return *exc* without the Cancelled of a run's own deadline."""
    if isinstance(exc, BaseExceptionGroup):
        _, rest = exc.split(trio.Cancelled)
        if rest is not None:
            return rest
    return exc


_DECODER = json.JSONDecoder()


def decode_payload(text: str) -> Any:
    """Decode a stored payload.

    Payloads are stored as compact JSON, so raw_decode() suffices; it skips
    the two whitespace scans of json.loads(), which show in every run.
    """
    value, end = _DECODER.raw_decode(text)
    if end != len(text):
        return json.loads(text)  # raises the error for the extra data
    return value


def _cancelled_from_outside() -> bool:
    """Tell whether a scope around the calling task is cancelled: a shutdown
    of the queue, as opposed to a run's own time limit."""
    return trio.current_effective_deadline() == -math.inf


def timeout_text(job: ClaimedJob, duration: float, limit: float | None) -> str:
    """Return the start of the error of a run that timed out."""
    return (
        f"JobTimeout: attempt {job.attempt} timed out after {_seconds(duration)}"
        f" (timeout is {_seconds(limit or 0)})"
    )


def job_context(job: ClaimedJob, clock: WallClock) -> JobContext:
    """Return what :func:`current_job` tells the handler of a run of *job*."""
    return JobContext(
        id=job.id,
        name=job.name,
        attempt=job.attempt,
        max_retries=job.config.max_retries,
        started_at=from_microseconds(clock.now_us()),
    )


@trio.lowlevel.enable_ki_protection
async def release_job(persistence: Persistence, job: ClaimedJob) -> bool:
    """Put an interrupted job back to pending without using up its attempt.

    Runs shielded with a time limit, because it is called while cancelled.
    Returns False if the release was not recorded; the job then stays
    running until the lease of its owner expires and it is recovered.
    """
    reply: Reply[bool] = Reply()
    with trio.move_on_after(RELEASE_TIMEOUT, shield=True):
        try:
            await persistence.submit(Release(job=job, reply=reply))
            return await reply.wait()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass
        except Exception as exc:
            logger.error(
                "job %s (%s): could not put it back after its run was cancelled: %s",
                job.id,
                job.name,
                exc,
                exc_info=exc,
                extra={"job_id": job.id, "job_name": job.name},
            )
            return False
    logger.error(
        "job %s (%s): its run was cancelled and putting it back was not "
        "recorded; it is recovered once the lease of this queue expires",
        job.id,
        job.name,
        extra={"job_id": job.id, "job_name": job.name},
    )
    return False
