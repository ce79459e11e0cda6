"""Job events and statistics: one event per transition, sent after commit,
and listeners that cannot break the queue."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import pytest
import trio

from pulse_trio import (
    EventKind,
    JobConfig,
    JobEvent,
    JobStatus,
    Pulse,
)

from .helpers import hang_after_start

pytest_plugins = ["pulse_trio.testing"]


async def noop(_: Any) -> None:
    pass


async def broken(_: Any) -> None:
    raise RuntimeError("broken")


def kinds_of(events: list[JobEvent], job_id: str) -> list[EventKind]:
    return [event.kind for event in events if event.job_id == job_id]


class TestEventKinds:
    async def test_completed_run_sends_started_then_completed(
        self, pulse: Pulse
    ) -> None:
        events: list[JobEvent] = []
        pulse.add_listener(events.append)
        pulse.handle("noop", noop)

        job_id = await pulse.enqueue("noop")
        await pulse.wait(job_id)

        assert kinds_of(events, job_id) == [EventKind.STARTED, EventKind.COMPLETED]
        completed = events[-1]
        assert completed.attempt == 1
        assert completed.duration is not None
        assert completed.duration >= 0
        assert completed.error is None

    async def test_failures_send_failed_then_dead(self, pulse: Pulse) -> None:
        events: list[JobEvent] = []
        pulse.add_listener(events.append)
        pulse.handle("broken", broken)

        job_id = await pulse.enqueue_with_config(
            "broken", None, JobConfig(max_retries=1, retry_delay=0)
        )
        await pulse.wait(job_id)

        assert kinds_of(events, job_id) == [
            EventKind.STARTED,
            EventKind.FAILED,
            EventKind.STARTED,
            EventKind.DEAD,
        ]
        failed, dead = events[1], events[3]
        assert failed.error == "RuntimeError: broken"
        assert failed.next_run_at is not None
        assert failed.duration is not None
        assert dead.attempt == 2
        assert dead.next_run_at is None

    async def test_retry_of_dead_job_sends_retried(self, pulse: Pulse) -> None:
        events: list[JobEvent] = []
        pulse.add_listener(events.append)
        pulse.handle("broken", broken)
        job_id = await pulse.enqueue_with_config("broken", None, JobConfig.no_retry())
        await pulse.wait(job_id)

        await pulse.retry(job_id)
        await pulse.drain()

        assert kinds_of(events, job_id) == [
            EventKind.STARTED,
            EventKind.DEAD,
            EventKind.RETRIED,
            EventKind.STARTED,
            EventKind.DEAD,
        ]

    async def test_shutdown_now_sends_cancelled(self) -> None:
        queue = Pulse.in_memory(workers=1)
        events: list[JobEvent] = []
        queue.add_listener(events.append)
        started = trio.Event()
        queue.handle("hang", hang_after_start(started))
        job_id = await queue.enqueue("hang")
        async with trio.open_nursery() as nursery:
            await nursery.start(queue.run)
            await started.wait()
            await queue.shutdown_now()

        assert kinds_of(events, job_id) == [EventKind.STARTED, EventKind.CANCELLED]
        assert (await queue.status(job_id)).status is JobStatus.PENDING
        queue.close()


class TestListeners:
    async def test_failing_listener_is_logged_and_kept(
        self, pulse: Pulse, caplog: pytest.LogCaptureFixture
    ) -> None:
        calls: list[EventKind] = []

        def failing(event: JobEvent) -> None:
            calls.append(event.kind)
            raise ValueError("listener bug")

        pulse.add_listener(failing)
        pulse.handle("noop", noop)
        with caplog.at_level(logging.ERROR, logger="pulse_trio"):
            first = await pulse.enqueue("noop")
            await pulse.wait(first)
            second = await pulse.enqueue("noop")
            await pulse.wait(second)

        assert calls.count(EventKind.COMPLETED) == 2
        messages = [record.getMessage() for record in caplog.records]
        assert any(first in m and "listener bug" in m for m in messages)

    @pytest.mark.parametrize("error", [SystemExit(3), KeyboardInterrupt()])
    async def test_listener_raising_base_exception_cannot_stop_queue(
        self, pulse: Pulse, caplog: pytest.LogCaptureFixture, error: BaseException
    ) -> None:
        def failing(event: JobEvent) -> None:
            raise error

        pulse.add_listener(failing)
        pulse.handle("noop", noop)
        with caplog.at_level(logging.ERROR, logger="pulse_trio"):
            ids = [await pulse.enqueue("noop") for _ in range(3)]
            jobs = [await pulse.wait(job_id) for job_id in ids]

        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 3
        assert pulse.statistics().jobs_running == 0
        assert any(type(error).__name__ in r.getMessage() for r in caplog.records) or (
            any(r.exc_info and r.exc_info[0] is type(error) for r in caplog.records)
        )

    async def test_remove_twice_keeps_other_registration(self, pulse: Pulse) -> None:
        events: list[JobEvent] = []
        remove_first = pulse.add_listener(events.append)
        pulse.add_listener(events.append)
        pulse.handle("noop", noop)

        remove_first()
        remove_first()
        job_id = await pulse.enqueue("noop")
        await pulse.wait(job_id)

        assert kinds_of(events, job_id) == [EventKind.STARTED, EventKind.COMPLETED]

    async def test_listener_must_be_callable(self, pulse: Pulse) -> None:
        with pytest.raises(TypeError, match="listener must be callable, not int"):
            pulse.add_listener(3)  # type: ignore[arg-type]


class TestStatistics:
    async def test_totals_count_completed_and_failed_runs(self, pulse: Pulse) -> None:
        pulse.handle("noop", noop)
        pulse.handle("broken", broken)

        for _ in range(3):
            await pulse.wait(await pulse.enqueue("noop"))
        await pulse.wait(
            await pulse.enqueue_with_config(
                "broken", None, JobConfig(max_retries=1, retry_delay=0)
            )
        )
        stats = pulse.statistics()

        assert stats.completed_since_start == 3
        assert stats.failed_since_start == 2
        assert stats.jobs_dead == 1
        assert stats.jobs_running == 0
        assert stats.workers_busy == 0
        assert stats.workers_idle == stats.workers

    async def test_waiting_jobs_counted_by_status(self, pulse: Pulse) -> None:
        await pulse.enqueue("unhandled")
        await pulse.schedule("unhandled", None, delay=timedelta(hours=1))
        stats = pulse.statistics()

        assert stats.jobs_pending == 1
        assert stats.jobs_scheduled == 1
        assert stats.jobs_retrying == 0

    async def test_statistics_is_frozen(self, pulse: Pulse) -> None:
        stats = pulse.statistics()

        with pytest.raises(AttributeError):
            stats.workers = 0  # type: ignore[misc]
