"""The public names of the package."""

import pulse_trio

EXPECTED_EXPORTS = [
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


def test_all_lists_public_names() -> None:
    assert pulse_trio.__all__ == EXPECTED_EXPORTS


def test_all_is_sorted() -> None:
    assert pulse_trio.__all__ == sorted(pulse_trio.__all__)


def test_all_names_exist() -> None:
    for name in pulse_trio.__all__:
        assert hasattr(pulse_trio, name), name


def test_errors_derive_from_pulse_error() -> None:
    for name in pulse_trio.__all__:
        value = getattr(pulse_trio, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, pulse_trio.PulseError), name
