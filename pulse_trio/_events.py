"""Job events: what an application can count and time without parsing logs."""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime

import attrs
import trio

logger = logging.getLogger(__name__)


class EventKind(enum.Enum):
    """Kind of change in the life of a job."""

    STARTED = "started"
    """A worker started a run."""
    COMPLETED = "completed"
    """A run returned and the job is completed."""
    FAILED = "failed"
    """A run failed and the job will be retried after its backoff."""
    DEAD = "dead"
    """A run failed with no retries left; the job is dead."""
    RETRIED = "retried"
    """A dead job was made pending again by :meth:`Pulse.retry`."""
    CANCELLED = "cancelled"
    """A shutdown cancelled a run; the job is pending, attempt not counted."""
    RECOVERED = "recovered"
    """The process running the job died; the job is due again or dead."""
    DELETED = "deleted"
    """The job was deleted by :meth:`Pulse.delete` or :meth:`Pulse.delete_all`."""


@attrs.frozen
class JobEvent:
    """One event in the life of a job, sent to listeners after it commits.

    :attr:`EventKind.STARTED` is the exception: it is sent when the worker
    starts the run, after the claim that started it has committed.
    """

    kind: EventKind
    """What happened."""
    job_id: str
    """Id of the job."""
    name: str
    """Name of the job."""
    attempt: int
    """Number of the run concerned, counting from 1."""
    at: datetime
    """When it happened (UTC)."""
    duration: float | None = None
    """Seconds the run took, for events that end a run."""
    error: str | None = None
    """Error of the failed run, for FAILED, DEAD and RECOVERED."""
    next_run_at: datetime | None = None
    """When the job is due again, for FAILED and RECOVERED."""


Listener = Callable[[JobEvent], object]


@attrs.define(eq=False)
class Listeners:
    """The callbacks registered with :meth:`Pulse.add_listener`."""

    # Keyed by a token per registration, so that removing one registration
    # of a callback added twice leaves the other.
    _callbacks: dict[object, Listener] = attrs.field(factory=dict)

    def add(self, callback: Listener) -> Callable[[], None]:
        if not callable(callback):
            raise TypeError(
                f"listener must be callable, not {type(callback).__name__} "
                f"({callback!r})"
            )
        token = object()
        self._callbacks[token] = callback

        def remove() -> None:
            self._callbacks.pop(token, None)

        return remove

    def __bool__(self) -> bool:
        return bool(self._callbacks)

    # Protected, so that a Ctrl-C arriving meanwhile is delivered after the
    # listeners rather than caught below as if a listener had raised it.
    @trio.lowlevel.enable_ki_protection
    def emit(self, event: JobEvent) -> None:
        """Call every listener; an error in one is logged, not raised.

        Listeners run inside the actors that record jobs, so even a
        ``SystemExit`` or ``KeyboardInterrupt`` raised by one is logged and
        dropped: letting it through would stop the queue's bookkeeping with
        jobs half recorded.
        """
        for callback in list(self._callbacks.values()):
            try:
                callback(event)
            except BaseException as exc:
                logger.error(
                    "job %s (%s): listener %r failed on event %s: %s",
                    event.job_id,
                    event.name,
                    callback,
                    event.kind.value,
                    exc,
                    exc_info=exc,
                    extra={"job_id": event.job_id, "job_name": event.name},
                )
