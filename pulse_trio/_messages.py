"""Messages that the actors send to the persistence actor.

Each message is one request. The sender of a request with a :class:`Reply`
waits for it. A request without one is sent and forgotten, and the
persistence actor reports its effects after the commit.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Generic, TypeVar

import attrs
import trio

from ._config import JobConfig
from ._owner import Owner

T = TypeVar("T")


@attrs.define(eq=False)
class Reply(Generic[T]):
    """The outcome of one request, set once its batch has committed."""

    _done: trio.Event = attrs.field(factory=trio.Event, init=False)
    _value: T | None = attrs.field(default=None, init=False)
    _error: BaseException | None = attrs.field(default=None, init=False)

    def set(self, value: T) -> None:
        self._value = value
        self._done.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._done.set()

    async def wait(self) -> T:
        await self._done.wait()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


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
        return {"id": self.id, "owner": self.owner, "attempt": self.attempt}


@attrs.frozen
class Insert:
    rows: tuple[Mapping[str, Any], ...]
    reply: Reply[None]


@attrs.frozen
class Claim:
    names: frozenset[str]
    limit: int
    owner: str
    reply: Reply[list[ClaimedJob]]


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
class RenewLease:
    owner: Owner
    lease_until: int
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
    """Make up to *limit* dead jobs pending, only those named *name* if set."""

    name: str | None
    limit: int
    reply: Reply[list[tuple[str, str]]]


Message = (
    Insert
    | Claim
    | Complete
    | Fail
    | Release
    | RetryDead
    | RenewLease
    | RecoverOrphans
    | RemoveOwner
    | Purge
    | RetryAllDead
)
