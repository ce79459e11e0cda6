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
    JobRunning,
    NoRetry,
    PulseError,
    QueueClosed,
    SchemaTooNew,
)
from ._events import EventKind, JobEvent
from ._job import AttemptError, Job, JobStatus
from ._pulse import Pulse
from ._stats import PulseStatistics, QueueInfo, QueueSummary

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
    "JobRunning",
    "JobStatus",
    "NoRetry",
    "Pulse",
    "PulseError",
    "PulseStatistics",
    "QueueClosed",
    "QueueInfo",
    "QueueSummary",
    "SchemaTooNew",
    "current_job",
]
