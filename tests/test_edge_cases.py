"""Edge cases of due times, shutdown and handler exceptions."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import JobConfig, JobStatus, Pulse

OpenQueue = Callable[..., Awaitable[Pulse]]


class TestDueRange:
    async def test_far_delay_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(ValueError, match=r"delay is too long"):
            await pulse.schedule("x", None, delay=timedelta(days=365 * 10_000))

        assert await pulse.list_jobs() == []

    async def test_year_one_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        early = datetime(1, 1, 1, 1, tzinfo=timezone(timedelta(hours=23)))

        with pytest.raises(ValueError, match=r"outside the supported range"):
            await pulse.schedule("x", None, early)

        assert await pulse.list_jobs() == []

    async def test_year_9999_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        late = datetime(9999, 12, 31, 23, tzinfo=timezone(timedelta(hours=-23)))

        with pytest.raises(ValueError, match=r"between the years 1 and 9999"):
            await pulse.schedule("x", None, late)

        assert await pulse.list_jobs() == []

    async def test_max_backoff_stays_readable(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def fail(_: Any) -> None:
            raise ValueError("no")

        pulse.handle("fail", fail)
        longest = timedelta(days=366 * 1000)
        config = JobConfig(max_retries=1, retry_delay=longest, max_retry_delay=longest)
        job_id = await pulse.enqueue_with_config("fail", None, config)
        async with pulse:
            await pulse.drain()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.RETRYING
        assert job.run_at.year > 2900


class TestShutdownEdges:
    async def test_handler_enqueues_while_stopping(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        children: list[str] = []

        async def parent(_: Any) -> None:
            await trio.sleep(1)
            children.append(await pulse.enqueue("child"))

        pulse.handle("parent", parent)
        parent_id = await pulse.enqueue_with_config(
            "parent", None, JobConfig(max_retries=0)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await trio.sleep(0.5)
            await pulse.shutdown_graceful()

        assert (await pulse.status(parent_id)).status is JobStatus.COMPLETED
        [child_id] = children
        assert (await pulse.status(child_id)).status is JobStatus.PENDING

    async def test_later_timeout_shortens_grace(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def forever(_: Any) -> None:
            await trio.sleep_forever()

        pulse.handle("forever", forever)
        job_id = await pulse.enqueue_with_config(
            "forever", None, JobConfig(timeout=None)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await trio.sleep(1)
            nursery.start_soon(pulse.shutdown_graceful)
            await trio.sleep(1)
            started = trio.current_time()
            with trio.fail_after(100):
                await pulse.shutdown_graceful(timeout=5)
            waited = trio.current_time() - started

        assert waited == pytest.approx(5)
        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0

    async def test_interrupt_in_block_stops_at_once(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def long(_: Any) -> None:
            await trio.sleep(1000)

        pulse.handle("long", long)
        job_id = await pulse.enqueue_with_config("long", None, JobConfig(timeout=None))
        started = trio.current_time()

        with pytest.raises(KeyboardInterrupt):
            async with pulse:
                await trio.sleep(1)
                raise KeyboardInterrupt

        assert trio.current_time() - started < 10
        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0


class TestHandlerExceptions:
    async def test_generator_exit_fails_the_run(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def bad(_: Any) -> None:
            raise GeneratorExit("odd")

        pulse.handle("bad", bad)
        job_id = await pulse.enqueue_with_config("bad", None, JobConfig.no_retry())
        async with pulse:
            job = await pulse.wait(job_id)

        assert job.status is JobStatus.DEAD
        assert job.last_error == "GeneratorExit: odd"

    async def test_cleanup_error_on_shutdown_dropped(
        self, open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
    ) -> None:
        pulse = await open_queue()

        async def child() -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise ValueError("cleanup failed")

        async def parent(_: Any) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(child)
                await trio.sleep_forever()

        pulse.handle("parent", parent)
        job_id = await pulse.enqueue_with_config(
            "parent", None, JobConfig(timeout=None)
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await trio.sleep(1)
            await pulse.shutdown_now()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        dropped = [r for r in caplog.records if "errors are dropped" in r.getMessage()]
        assert len(dropped) == 1
        assert job_id in dropped[0].getMessage()
        assert "cleanup failed" in dropped[0].getMessage()


async def test_wait_sees_other_queue_on_file(tmp_path: Path) -> None:
    path = tmp_path / "shared.db"
    runner = await Pulse.new(path, workers=2)
    producer = await Pulse.new(path)

    async def work(_: Any) -> None:
        await trio.sleep(5)

    runner.handle("work", work)
    try:
        async with runner:
            job_id = await producer.enqueue("work")
            with trio.fail_after(3600):
                job = await producer.wait(job_id)
    finally:
        runner.close()
        producer.close()

    assert job.status is JobStatus.COMPLETED
