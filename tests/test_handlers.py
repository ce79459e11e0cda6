"""Handlers: async and plain functions, and current_job() inside them."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import trio

from pulse_trio import (
    JobConfig,
    JobContext,
    JobStatus,
    Pulse,
    PulseError,
    current_job,
)

from .helpers import wait_finished

OpenQueue = Callable[..., Awaitable[Pulse]]


async def test_sync_handler_runs_in_thread(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=2)
    threads: list[int] = []
    payloads: list[Any] = []

    def record(payload: Any) -> None:
        threads.append(threading.get_ident())
        payloads.append(payload)

    pulse.handle("record", record)
    ids = await pulse.enqueue_many("record", [{"n": 1}, {"n": 2}])
    async with pulse:
        jobs = await wait_finished(pulse, ids)

    assert sorted(payloads, key=lambda p: p["n"]) == [{"n": 1}, {"n": 2}]
    assert threading.get_ident() not in threads
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 2


async def test_sync_handler_failure_recorded(open_queue: OpenQueue) -> None:
    pulse = await open_queue()

    def reject(_: Any) -> None:
        raise OSError("disk unavailable")

    pulse.handle("reject", reject)
    job_id = await pulse.enqueue_with_config(
        "reject", None, JobConfig(max_retries=1, retry_delay=60)
    )
    start = trio.current_time()
    async with pulse:
        [job] = await wait_finished(pulse, [job_id])

    assert job.status is JobStatus.DEAD
    assert [error.error for error in job.errors] == ["OSError: disk unavailable"] * 2
    assert "in reject" in job.errors[0].traceback
    # The retry waited its virtual minute under the mock clock.
    assert trio.current_time() - start >= 60


async def test_sync_handler_returning_awaitable_fails(
    open_queue: OpenQueue,
) -> None:
    pulse = await open_queue()

    async def forgot_async(_: Any) -> None:
        pass

    def returns_coroutine(payload: Any) -> Any:
        return forgot_async(payload)

    pulse.handle("wrong", returns_coroutine)
    job_id = await pulse.enqueue_with_config("wrong", None, JobConfig.no_retry())
    async with pulse:
        [job] = await wait_finished(pulse, [job_id])

    # trio.to_thread.run_sync itself rejects a function that returns a
    # coroutine, before the queue's own check runs.
    assert job.status is JobStatus.DEAD
    assert job.last_error is not None
    assert "asynchronous" in job.last_error


async def test_callable_object_with_async_call(open_queue: OpenQueue) -> None:
    pulse = await open_queue()
    seen: list[Any] = []

    class Recorder:
        async def __call__(self, payload: Any) -> None:
            await trio.sleep(1)
            seen.append(payload)

    pulse.handle("record", Recorder())
    job_id = await pulse.enqueue("record", 5)
    async with pulse:
        [job] = await wait_finished(pulse, [job_id])

    assert seen == [5]
    assert job.status is JobStatus.COMPLETED


class TestCurrentJob:
    async def test_outside_handler_raises(self) -> None:
        with pytest.raises(
            PulseError, match=r"current_job\(\) was called outside a job handler"
        ):
            current_job()

    async def test_in_async_handler(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        contexts: list[JobContext] = []

        async def record(_: Any) -> None:
            contexts.append(current_job())
            if current_job().attempt == 1:
                raise ValueError("first run fails")

        pulse.handle("record", record)
        config = JobConfig(max_retries=4, retry_delay=0)
        job_id = await pulse.enqueue_with_config("record", None, config)
        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert [c.attempt for c in contexts] == [1, 2]
        assert {c.id for c in contexts} == {job_id}
        assert {c.name for c in contexts} == {"record"}
        assert {c.max_retries for c in contexts} == {4}
        assert job.started_at is not None
        assert abs(contexts[-1].started_at - job.started_at) < timedelta(seconds=1)
        with pytest.raises(PulseError):
            current_job()

    async def test_in_sync_handler(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        contexts: list[JobContext] = []

        def record(_: Any) -> None:
            contexts.append(current_job())
            if current_job().attempt < 3:
                raise ValueError("early runs fail")

        pulse.handle("record", record)
        config = JobConfig(max_retries=2, retry_delay=0)
        job_id = await pulse.enqueue_with_config("record", None, config)
        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert [c.attempt for c in contexts] == [1, 2, 3]
        assert {c.id for c in contexts} == {job_id}
        assert job.status is JobStatus.COMPLETED

    async def test_in_child_task_of_handler(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(workers=2)
        seen: dict[str, str] = {}

        async def child(label: str) -> None:
            await trio.sleep(1)
            seen[label] = current_job().id

        async def parent(label: str) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child, label)

        pulse.handle("parent", parent)
        ids = await pulse.enqueue_many("parent", ["a", "b"])
        async with pulse:
            await wait_finished(pulse, ids)

        assert seen == {"a": ids[0], "b": ids[1]}
