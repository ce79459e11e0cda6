"""Starting and stopping a queue: run(), async with, shutdowns, cancellation."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from pulse_trio import JobConfig, JobStatus, Pulse, PulseError, QueueClosed

from .helpers import count_jobs, wait_finished, wait_for_status

OpenQueue = Callable[..., Awaitable[Pulse]]


async def hang(_: Any) -> None:
    await trio.sleep_forever()


class TestRun:
    async def test_nursery_start_accepts_jobs(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        runs: list[str] = []

        async def record(label: str) -> None:
            runs.append(label)

        pulse.handle("record", record)
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            job_id = await pulse.enqueue("record", "started")
            await wait_finished(pulse, [job_id])
            await pulse.shutdown_graceful()

        assert runs == ["started"]

    async def test_run_returns_after_shutdown(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        returned = trio.Event()

        async def run_and_mark() -> None:
            await pulse.run()
            returned.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_and_mark)
            await trio.sleep(10)
            assert not returned.is_set()
            await pulse.shutdown_graceful()
            assert returned.is_set()

    async def test_run_twice_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        async with pulse:
            with pytest.raises(PulseError, match=r"run\(\) can start only once"):
                await pulse.run()

        with pytest.raises(PulseError, match=r"this queue is stopped"):
            await pulse.run()

    async def test_shutdown_before_run_stops_queue(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        await pulse.shutdown_graceful()

        with pytest.raises(QueueClosed):
            await pulse.enqueue("job")
        # The run that the shutdown came before returns at once, as a signal
        # handler's shutdown during start-up expects.
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
        with pytest.raises(PulseError, match=r"run\(\) can start only once"):
            await pulse.run()

    async def test_shutdown_while_run_starts_claims_nothing(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=2)
        runs: list[object] = []
        pulse.handle("record", runs.append)
        ids = await pulse.enqueue_many("record", range(4))
        async with trio.open_nursery() as nursery:
            nursery.start_soon(pulse.run)
            await trio.sleep(0)  # run() has started and awaits its first write
            await pulse.shutdown_graceful()

        assert runs == []
        assert [(await pulse.status(i)).status for i in ids] == [JobStatus.PENDING] * 4

    async def test_with_workers_after_start_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        async with pulse:
            with pytest.raises(PulseError, match=r"before run\(\) starts"):
                pulse.with_workers(3)

        assert pulse.workers == 1

    async def test_close_while_running_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        async with pulse:
            with pytest.raises(PulseError, match=r"shut the queue down before closing"):
                pulse.close()


class TestGracefulShutdown:
    async def test_running_job_finishes_pending_stay(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=1)
        release = trio.Event()
        finished: list[str] = []

        async def wait_for_release(label: str) -> None:
            await release.wait()
            finished.append(label)

        pulse.handle("job", wait_for_release)
        first, *waiting = await pulse.enqueue_many("job", ["a", "b", "c"])

        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await wait_for_status(pulse, first, [JobStatus.RUNNING])
            nursery.start_soon(pulse.shutdown_graceful)
            await trio.sleep(1)
            rows_before = count_jobs(pulse)
            with pytest.raises(QueueClosed, match=r"is stopping and takes no new jobs"):
                await pulse.enqueue("job", "late")
            with pytest.raises(QueueClosed):
                await pulse.enqueue_many("job", ["late"])
            with pytest.raises(QueueClosed):
                await pulse.schedule("job", "late", delay=5)
            rows_after = count_jobs(pulse)
            await trio.sleep(60)
            # The running job delays the shutdown until it returns.
            still_running = await pulse.status(first)
            release.set()

        assert rows_after == rows_before == 3
        assert still_running.status is JobStatus.RUNNING
        assert finished == ["a"]
        assert (await pulse.status(first)).status is JobStatus.COMPLETED
        for job_id in waiting:
            job = await pulse.status(job_id)
            assert job.status is JobStatus.PENDING
            assert job.attempts == 0

    async def test_enqueue_after_shutdown_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        async with pulse:
            pass

        with pytest.raises(
            QueueClosed, match=r"is stopped and takes no new jobs; nothing was stored"
        ):
            await pulse.enqueue("job")

        assert count_jobs(pulse) == 0

    async def test_timeout_cancels_running_job(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(workers=2)
        pulse.handle("hang", hang)
        config = JobConfig(timeout=None, max_retries=0)
        ids = await pulse.enqueue_many("hang", [1, 2], config)

        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            for job_id in ids:
                await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            start = trio.current_time()
            await pulse.shutdown_graceful(timeout=5)
            waited = trio.current_time() - start

        assert waited == pytest.approx(5, abs=1e-3)
        for job_id in ids:
            job = await pulse.status(job_id)
            assert job.status is JobStatus.PENDING
            assert job.attempts == 0
            assert job.errors == ()

    async def test_timeout_not_reached_lets_job_finish(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def short(_: Any) -> None:
            await trio.sleep(2)

        pulse.handle("short", short)
        job_id = await pulse.enqueue("short")
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            await pulse.shutdown_graceful(timeout=30)

        job = await pulse.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1

    async def test_shutdown_from_handler_returns(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def stop_queue(_: Any) -> None:
            await pulse.shutdown_graceful()

        pulse.handle("stop", stop_queue)
        job_id = await pulse.enqueue("stop")
        await pulse.enqueue("stop")

        with trio.fail_after(60):
            await pulse.run()

        assert (await pulse.status(job_id)).status is JobStatus.COMPLETED

    async def test_async_with_waits_for_running_job(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def slow(_: Any) -> None:
            await trio.sleep(30)

        pulse.handle("slow", slow)
        async with pulse:
            job_id = await pulse.enqueue("slow")
            await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            exit_at = trio.current_time()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert trio.current_time() - exit_at >= 29
        with pytest.raises(QueueClosed):
            await pulse.enqueue("slow")

    async def test_async_with_body_error_still_shuts_down(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def slow(_: Any) -> None:
            await trio.sleep(30)

        pulse.handle("slow", slow)
        caught = False
        try:
            async with pulse:
                job_id = await pulse.enqueue("slow")
                await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
                raise ValueError("body failed")
        except* ValueError:
            caught = True

        assert caught
        assert (await pulse.status(job_id)).status is JobStatus.COMPLETED
        with pytest.raises(QueueClosed):
            await pulse.enqueue("slow")

    async def test_async_with_body_error_unwrapped(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(ValueError, match=r"body failed"):
            async with pulse:
                raise ValueError("body failed")

    async def test_async_with_cancelled_releases_job(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        pulse.handle("hang", hang)
        job_id = await pulse.enqueue_with_config("hang", None, JobConfig(timeout=None))

        with trio.move_on_after(30):
            async with pulse:
                await trio.sleep_forever()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0

    async def test_negative_timeout_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(ValueError, match=r"timeout must not be negative"):
            await pulse.shutdown_graceful(timeout=-1)


class TestImmediateShutdown:
    async def test_shutdown_now_cancels_running_jobs(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=3)
        cancelled: list[int] = []

        async def hang_and_note(number: int) -> None:
            try:
                await trio.sleep_forever()
            except trio.Cancelled:
                cancelled.append(number)
                raise

        pulse.handle("hang", hang_and_note)
        ids = await pulse.enqueue_many("hang", [1, 2, 3, 4])

        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            for job_id in ids[:3]:
                await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            start = trio.current_time()
            await pulse.shutdown_now()
            waited = trio.current_time() - start

        assert sorted(cancelled) == [1, 2, 3]
        assert waited < 1
        for job_id in ids:
            job = await pulse.status(job_id)
            assert job.status is JobStatus.PENDING
            assert job.attempts == 0
            assert job.errors == ()

    async def test_handler_nursery_cancelled_is_released(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def with_children(_: Any) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.sleep_forever)
                nursery.start_soon(trio.sleep_forever)

        pulse.handle("children", with_children)
        job_id = await pulse.enqueue("children")
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            await pulse.shutdown_now()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        assert job.errors == ()

    @pytest.mark.parametrize("how", ["now", "graceful-timeout"])
    async def test_cleanup_error_while_cancelled_is_released(
        self, open_queue: OpenQueue, caplog: pytest.LogCaptureFixture, how: str
    ) -> None:
        # The handler's cleanup replaces the shutdown's Cancelled with an
        # error of its own: the run was still cut short by the queue.
        pulse = await open_queue()

        async def fragile(_: Any) -> None:
            try:
                await trio.sleep_forever()
            finally:
                raise OSError("cleanup failed")

        pulse.handle("fragile", fragile)
        job_id = await pulse.enqueue_with_config("fragile", None, JobConfig.no_retry())
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            if how == "now":
                await pulse.shutdown_now()
            else:
                await pulse.shutdown_graceful(timeout=10)

        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        assert job.errors == ()
        dropped = [r.getMessage() for r in caplog.records if job_id in r.getMessage()]
        assert any("OSError: cleanup failed" in message for message in dropped)

    async def test_thread_failure_during_shutdown_is_recorded(
        self, open_queue: OpenQueue
    ) -> None:
        # A shutdown cannot cancel a thread: the function runs to its end,
        # and what it raises is its own failure.
        pulse = await open_queue()
        started = threading.Event()
        release = threading.Event()

        def fails_later(_: Any) -> None:
            started.set()
            release.wait(10)
            raise ValueError("real failure")

        pulse.handle("fails", fails_later)
        job_id = await pulse.enqueue("fails", config=JobConfig.no_retry())
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await trio.to_thread.run_sync(started.wait)
            nursery.start_soon(pulse.shutdown_now)
            # Virtual time stands still while a handler thread runs, so the
            # shutdown gets its turn from checkpoints, not a sleep.
            for _ in range(3):
                await trio.lowlevel.checkpoint()
            assert pulse._crew_scope is not None
            assert pulse._crew_scope.cancel_called
            release.set()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.DEAD
        assert job.attempts == 1
        assert job.last_error == "ValueError: real failure"

    async def test_shutdown_now_during_graceful(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("hang", hang)
        job_id = await pulse.enqueue_with_config("hang", None, JobConfig(timeout=None))

        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            nursery.start_soon(pulse.shutdown_graceful)
            await trio.sleep(10)
            await pulse.shutdown_now()

        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0


class TestPropagation:
    async def test_cancelling_run_releases_job(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("hang", hang)
        job_id = await pulse.enqueue_with_config("hang", None, JobConfig(timeout=None))

        with trio.move_on_after(20) as scope:
            await pulse.run()

        assert scope.cancelled_caught
        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        assert job.errors == ()

    @pytest.mark.parametrize(
        "control", [KeyboardInterrupt(), SystemExit(3)], ids=["interrupt", "exit"]
    )
    async def test_control_exception_propagates(
        self, open_queue: OpenQueue, control: BaseException
    ) -> None:
        pulse = await open_queue(workers=2)

        async def raise_control(_: Any) -> None:
            await trio.sleep(1)
            raise control

        pulse.handle("control", raise_control)
        pulse.handle("hang", hang)
        hanging = await pulse.enqueue("hang")
        raising = await pulse.enqueue("control")

        with pytest.raises(type(control)) as info:
            await pulse.run()

        assert info.value is control
        for job_id in (hanging, raising):
            job = await pulse.status(job_id)
            assert job.status is JobStatus.PENDING
            assert job.attempts == 0
            assert job.errors == ()

    @pytest.mark.parametrize(
        "control", [KeyboardInterrupt(), SystemExit(3)], ids=["interrupt", "exit"]
    )
    async def test_control_exception_leaves_async_with(
        self, open_queue: OpenQueue, control: BaseException
    ) -> None:
        pulse = await open_queue()

        async def raise_control(_: Any) -> None:
            raise control

        pulse.handle("control", raise_control)
        job_id = await pulse.enqueue("control")

        with pytest.raises(type(control)) as info:
            async with pulse:
                await trio.sleep_forever()

        assert info.value is control
        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
