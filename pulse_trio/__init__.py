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
from ._job import AttemptError, Job, JobStatus
from ._pulse import Pulse

__all__ = [
    "AttemptError",
    "DatabaseError",
    "HandlerError",
    "InvalidJobName",
    "InvalidPayload",
    "Job",
    "JobConfig",
    "JobContext",
    "JobNotDead",
    "JobNotFound",
    "JobPriority",
    "JobStatus",
    "Pulse",
    "PulseError",
    "QueueClosed",
    "SchemaTooNew",
    "current_job",
]
