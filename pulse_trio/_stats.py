"""Statistics of a queue and summaries of its database."""

from __future__ import annotations

from datetime import datetime

import attrs

from ._config import JobPriority
from ._job import JobStatus


@attrs.frozen
class PulseStatistics:
    """A snapshot of one queue, returned by :meth:`Pulse.statistics`.

    Job counts are read from the database, so they include jobs of other
    processes that share it; the worker counts and totals are this queue's.
    """

    workers: int
    """Jobs this queue runs at once."""
    workers_busy: int
    """Workers running a job now."""
    workers_idle: int
    """Workers waiting for a job."""
    jobs_pending: int
    """Jobs due and waiting for a worker."""
    jobs_scheduled: int
    """Jobs not yet due."""
    jobs_running: int
    """Jobs that a worker runs now."""
    jobs_retrying: int
    """Jobs waiting for their backoff after a failed run."""
    jobs_dead: int
    """Jobs in the dead-letter queue."""
    completed_since_start: int
    """Runs this queue completed since it was opened."""
    failed_since_start: int
    """Runs this queue saw fail since it was opened."""


@attrs.frozen
class QueueInfo:
    """A queue that runs, or ran, on the database: one call of
    :meth:`Pulse.run`, in some process."""

    id: str
    """Random id of the run, as stored in the ``owner`` of its jobs."""
    host: str
    """Host name of the machine."""
    pid: int
    """Process id, on that host."""
    started_at: datetime
    """When the queue started (UTC)."""
    lease_until: datetime
    """When its claim on its running jobs ends unless it renews it (UTC)."""
    alive: bool
    """Whether it still runs. On this host, the process decides; for
    another host or PID namespace, the lease."""
    handles: frozenset[str]
    """Names of the jobs it has handlers for."""
    running: int
    """Jobs it runs now; those of a queue that is not alive are recovered
    at the next check of a running queue."""


@attrs.frozen
class QueueSummary:
    """Counts over the whole database, returned by :meth:`Pulse.summary`."""

    by_status: dict[JobStatus, int]
    """Jobs per status, with every status present."""
    waiting_by_priority: dict[JobPriority, int]
    """Pending, scheduled and retrying jobs per priority."""
    oldest_due_at: datetime | None
    """Due time of the job that has waited longest for a worker."""
    completed_last_minute: int
    """Jobs completed in the last 60 seconds."""
    completed_last_hour: int
    """Jobs completed in the last hour."""
    failed_last_minute: int
    """Jobs whose latest failed run ended in the last 60 seconds."""
    failed_last_hour: int
    """Jobs whose latest failed run ended in the last hour."""
    due_by_name: dict[str, int] = attrs.field(factory=dict)
    """Due jobs per name, the name with the most jobs first."""
    queues: tuple[QueueInfo, ...] = ()
    """The queues recorded in the database, alive or not, oldest first. An
    in-memory queue records none."""

    @property
    def unhandled_names(self) -> list[str]:
        """Names of due jobs that no live queue handles.

        Such jobs wait until a process with a handler for their name runs;
        they are not slow workers.
        """
        handled = set().union(*(queue.handles for queue in self.queues if queue.alive))
        return [name for name in self.due_by_name if name not in handled]
