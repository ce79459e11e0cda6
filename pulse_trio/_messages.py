"""Messages that the actors send to the persistence actor.

Each message is one request. The sender of a request with a :class:`Reply`
waits for it. A request without one is sent and forgotten, and the
persistence actor reports its effects after the commit.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs
import trio

from ._config import JobConfig
from ._owner import Owner

T = TypeVar("T")


class Waiter:
    """The one task that waits on an object, and the means to wake it.

    A reply, the persistence actor's mailbox and a worker's inbox each
    have one waiting task, so they wake it with trio's low-level
    reschedule; a :class:`trio.Event` or a memory channel costs several
    times more per hand-off, and there is one per job.
    """

    __slots__ = ("_task",)

    def __init__(self) -> None:
        self._task: trio.lowlevel.Task | None = None

    async def wait(self, on_cancel: Callable[[], object] | None = None) -> None:
        """Sleep until :meth:`wake`; call *on_cancel* if cancelled first."""
        self._task = trio.lowlevel.current_task()

        def abort(_: object) -> trio.lowlevel.Abort:
            self._task = None
            if on_cancel is not None:
                on_cancel()
            return trio.lowlevel.Abort.SUCCEEDED

        await trio.lowlevel.wait_task_rescheduled(abort)

    def wake(self) -> None:
        """Wake the waiting task, if one waits."""
        if self._task is not None:
            trio.lowlevel.reschedule(self._task)
            self._task = None


class Reply(Generic[T]):
    """The outcome of one request, set once its batch has committed."""

    __slots__ = ("_done", "_error", "_value", "_waiter")

    def __init__(self) -> None:
        self._done = False
        self._value: T | None = None
        self._error: BaseException | None = None
        self._waiter = Waiter()

    def set(self, value: T) -> None:
        self._value = value
        self._done = True
        self._waiter.wake()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done = True
        self._waiter.wake()

    async def wait(self) -> T:
        if self._done:
            await trio.lowlevel.checkpoint()
        else:
            await self._waiter.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


class Mailbox(Generic[T]):
    """An unbounded queue of messages with one receiving task.

    It does what an unbounded trio memory channel does for the persistence
    actor, at a fraction of the cost per message: every enqueue and every
    finished run sends one.
    """

    __slots__ = ("_closed", "_items", "_waiter")

    def __init__(self) -> None:
        self._items: collections.deque[T] = collections.deque()
        self._closed = False
        self._waiter = Waiter()

    def put(self, item: T) -> None:
        """Add *item* and wake the receiver.

        Raises:
            trio.ClosedResourceError: The mailbox was closed.
        """
        if self._closed:
            raise trio.ClosedResourceError("the mailbox is closed")
        self._items.append(item)
        self._waiter.wake()

    def close(self) -> None:
        """Take no more items; the receiver gets those already here, then
        :exc:`trio.EndOfChannel`."""
        self._closed = True
        self._waiter.wake()

    def get_nowait(self) -> T:
        """Return the oldest item.

        Raises:
            trio.WouldBlock: The mailbox is empty.
            trio.EndOfChannel: The mailbox is empty and closed.
        """
        if self._items:
            return self._items.popleft()
        if self._closed:
            raise trio.EndOfChannel
        raise trio.WouldBlock

    async def get(self) -> T:
        """Wait for an item and return it.

        Raises:
            trio.EndOfChannel: The mailbox is empty and closed.
        """
        if self._items or self._closed:
            await trio.lowlevel.checkpoint()
        else:
            await self._waiter.wait()
        return self.get_nowait()


@attrs.frozen
class ClaimedJob:
    """A job that this queue has claimed and hands to a worker."""

    id: str
    name: str
    payload: str
    attempt: int
    config: JobConfig
    owner: str
    seq: int

    @property
    def guard(self) -> dict[str, Any]:
        """Parameters that match the row only while this run owns it."""
        return {
            "seq": self.seq,
            "id": self.id,
            "owner": self.owner,
            "attempt": self.attempt,
        }


@attrs.frozen
class Insert:
    """Store jobs of one name: *rows* are in the column order of INSERT_JOB."""

    name: str
    rows: tuple[tuple[Any, ...], ...]
    due_now: bool
    """Whether the jobs are due at once, rather than scheduled."""
    reply: Reply[None]


@attrs.frozen
class Claim:
    names: frozenset[str]
    limit: int
    owner: str
    reply: Reply[list[ClaimedJob]]


@attrs.frozen
class ClaimDue:
    """Claim due jobs for the idle workers, sent when jobs may have come due."""


@attrs.frozen
class Complete:
    job: ClaimedJob
    duration: float


@attrs.frozen
class Fail:
    job: ClaimedJob
    duration: float
    error: str
    traceback: str
    exception: BaseException | None = attrs.field(default=None, eq=False, repr=False)
    """The exception itself, for the log record after the commit."""


@attrs.frozen
class Release:
    job: ClaimedJob
    reply: Reply[bool]


@attrs.frozen
class RetryDead:
    job_id: str
    reply: Reply[tuple[str, str]]


@attrs.frozen
class Delete:
    """Delete the job *job_id* unless it is running; the reply is its name
    and stored status."""

    job_id: str
    reply: Reply[tuple[str, str]]


@attrs.frozen
class RenewLease:
    """Record that *owner* is alive until *lease_until* and runs jobs of the
    names in *handles*."""

    owner: Owner
    lease_until: int
    handles: tuple[str, ...]
    reply: Reply[None]


@attrs.frozen
class RecoverOrphans:
    """Put back the running jobs whose owner is dead."""

    own_id: str
    reply: Reply[list[tuple[ClaimedJob, Any]]]


@attrs.frozen
class RemoveOwner:
    owner_id: str
    reply: Reply[None]


@attrs.frozen
class Purge:
    """Delete up to *limit* jobs of *status* that finished before *before*."""

    status: str
    before: int
    limit: int
    reply: Reply[int]


@attrs.frozen
class RetryAllDead:
    """Make the jobs with the ids *ids* pending, those that are dead."""

    ids: tuple[str, ...]
    reply: Reply[list[tuple[str, str]]]


@attrs.frozen
class DeleteMatching:
    """Delete the jobs with the ids *ids* that are not running and, if
    *status* is set, still have that reported status; the reply is the id,
    name and stored status of each deleted job."""

    ids: tuple[str, ...]
    status: str | None
    reply: Reply[list[tuple[str, str, str]]]


Message = (
    Insert
    | Claim
    | ClaimDue
    | Complete
    | Fail
    | Release
    | RetryDead
    | Delete
    | DeleteMatching
    | RenewLease
    | RecoverOrphans
    | RemoveOwner
    | Purge
    | RetryAllDead
)
