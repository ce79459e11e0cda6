"""pulse-trio: a persistent background-job queue for trio, on SQLite."""

from ._config import JobConfig, JobPriority
from ._context import JobContext, current_job
from ._errors import (
    DatabaseError,
    HandlerError,
    InvalidJobName,
    InvalidPayload,
    JobNotDead,
    JobNotFound,
    PulseError,
    QueueClosed,
    SchemaTooNew,
)
from ._events import EventKind, JobEvent
from ._job import AttemptError, Job, JobStatus
from ._pulse import Pulse
from ._stats import PulseStatistics, QueueSummary

__all__ = [
    "AttemptError",
    "DatabaseError",
    "EventKind",
    "HandlerError",
    "InvalidJobName",
    "InvalidPayload",
    "Job",
    "JobConfig",
    "JobContext",
    "JobEvent",
    "JobNotDead",
    "JobNotFound",
    "JobPriority",
    "JobStatus",
    "Pulse",
    "PulseError",
    "PulseStatistics",
    "QueueClosed",
    "QueueSummary",
    "SchemaTooNew",
    "current_job",
]
