"""Failed runs: retries with backoff, timeouts and the stored errors."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

from pulse_trio import JobConfig, JobStatus, NoRetry, Pulse, current_job

from .helpers import read_job_row, wait_finished, wait_for_status

OpenQueue = Callable[..., Awaitable[Pulse]]


def mock_clock() -> trio.testing.MockClock:
    clock = trio.lowlevel.current_clock()
    assert isinstance(clock, trio.testing.MockClock)
    return clock


TIME_TOLERANCE = 1e-3
"""Virtual seconds by which two computed times may differ from float rounding."""


class TestRetries:
    async def test_runs_at_most_max_retries_plus_one(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        attempts: list[int] = []

        async def always_fail(_: Any) -> None:
            attempts.append(current_job().attempt)
            raise ValueError("always fails")

        pulse.handle("fail", always_fail)
        config = JobConfig(max_retries=2, retry_delay=1)
        job_id = await pulse.enqueue_with_config("fail", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])
            # Nothing runs again once the job is dead.
            await trio.sleep(3600)

        assert attempts == [1, 2, 3]
        assert job.status is JobStatus.DEAD
        assert job.attempts == 3
        assert [error.attempt for error in job.errors] == [1, 2, 3]

    async def test_no_retry_runs_once(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        runs = 0

        async def always_fail(_: Any) -> None:
            nonlocal runs
            runs += 1
            raise ValueError("always fails")

        pulse.handle("fail", always_fail)
        job_id = await pulse.enqueue_with_config("fail", None, JobConfig.no_retry())

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert runs == 1
        assert job.status is JobStatus.DEAD
        assert job.attempts == 1

    async def test_success_after_failures_completes(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def fail_twice(_: Any) -> None:
            if current_job().attempt <= 2:
                raise ValueError(f"attempt {current_job().attempt} fails")

        pulse.handle("flaky", fail_twice)
        config = JobConfig(max_retries=2, retry_delay=0)
        job_id = await pulse.enqueue_with_config("flaky", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 3
        assert [error.error for error in job.errors] == [
            "ValueError: attempt 1 fails",
            "ValueError: attempt 2 fails",
        ]
        assert job.last_error == "ValueError: attempt 2 fails"
        assert job.finished_at is not None

    async def test_backoff_doubles_up_to_cap(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        config = JobConfig(max_retries=5, retry_delay=5, max_retry_delay=12)
        starts: list[float] = []
        stored_delays: list[float] = []

        async def always_fail(_: Any) -> None:
            starts.append(trio.current_time())
            job = await pulse.status(current_job().id)
            if job.errors:
                waited = job.run_at - job.errors[-1].failed_at
                stored_delays.append(waited.total_seconds())
            raise ValueError("always fails")

        pulse.handle("fail", always_fail)
        job_id = await pulse.enqueue_with_config("fail", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        expected = [5.0, 10.0, 12.0, 12.0, 12.0]
        assert stored_delays == expected
        gaps = [later - earlier for earlier, later in itertools.pairwise(starts)]
        assert gaps == pytest.approx(expected, abs=TIME_TOLERANCE)
        assert job.attempts == 6

    async def test_retrying_job_stores_due_time(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def always_fail(_: Any) -> None:
            raise ValueError("always fails")

        pulse.handle("fail", always_fail)
        config = JobConfig(max_retries=3, retry_delay=30)
        job_id = await pulse.enqueue_with_config("fail", None, config)

        async with pulse:
            job = await wait_for_status(pulse, job_id, [JobStatus.RETRYING])
            row = read_job_row(pulse, job_id)

        [error] = job.errors
        assert job.run_at - error.failed_at == timedelta(seconds=30)
        assert row["status"] == "retrying"
        assert row["run_at"] - row["last_failed_at"] == 30_000_000

    async def test_zero_retry_delay_retries_at_once(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        starts: list[float] = []

        async def always_fail(_: Any) -> None:
            starts.append(trio.current_time())
            raise ValueError("always fails")

        pulse.handle("fail", always_fail)
        config = JobConfig(max_retries=4, retry_delay=0)
        job_id = await pulse.enqueue_with_config("fail", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert len(starts) == 5
        assert max(starts) - min(starts) == pytest.approx(0, abs=TIME_TOLERANCE)
        assert job.status is JobStatus.DEAD

    async def test_job_config_is_stored(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        config = JobConfig.critical(
            retry_delay=timedelta(milliseconds=250), max_retry_delay=90, timeout=None
        )
        job_id = await pulse.enqueue_with_config("stored", {"a": 1}, config)

        job = await pulse.status(job_id)

        assert job.config == config
        assert job.max_retries == 5
        assert job.payload == {"a": 1}


class TestNoRetry:
    @pytest.mark.parametrize("style", ["async", "thread"])
    async def test_job_dies_at_once(
        self, open_queue: OpenQueue, style: str, caplog: pytest.LogCaptureFixture
    ) -> None:
        pulse = await open_queue()
        runs: list[int] = []

        def decline(_: Any) -> None:
            runs.append(current_job().attempt)
            try:
                raise ValueError("the bank said no")
            except ValueError as exc:
                raise NoRetry("card declined") from exc

        async def decline_async(payload: Any) -> None:
            decline(payload)

        pulse.handle("charge", decline_async if style == "async" else decline)
        job_id = await pulse.enqueue("charge", config=JobConfig(max_retries=5))
        async with pulse:
            job = await pulse.wait(job_id)

        assert runs == [1]
        assert job.status is JobStatus.DEAD
        assert job.attempts == 1
        assert job.last_error == "NoRetry: card declined"
        assert "ValueError: the bank said no" in job.errors[0].traceback
        assert "the handler raised NoRetry; job is dead" in caplog.text

    @pytest.mark.parametrize("shape", ["nursery", "group"])
    async def test_inside_exception_group(
        self, open_queue: OpenQueue, shape: str
    ) -> None:
        pulse = await open_queue()
        runs: list[int] = []

        async def decline() -> None:
            raise NoRetry("card declined")

        async def charge(_: Any) -> None:
            runs.append(current_job().attempt)
            if shape == "nursery":
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(decline)
            else:
                raise ExceptionGroup("checks", [ValueError("slow"), NoRetry("no")])

        pulse.handle("charge", charge)
        job_id = await pulse.enqueue("charge", config=JobConfig(max_retries=3))
        async with pulse:
            job = await pulse.wait(job_id)

        assert runs == [1]
        assert job.status is JobStatus.DEAD

    async def test_inline_queue_runs_once(self) -> None:
        pulse = Pulse.in_memory(inline=True)
        runs: list[int] = []

        async def decline(_: Any) -> None:
            runs.append(current_job().attempt)
            raise NoRetry("card declined")

        pulse.handle("charge", decline)
        job_id = await pulse.enqueue("charge", config=JobConfig(max_retries=3))

        assert runs == [1]
        assert (await pulse.status(job_id)).status is JobStatus.DEAD
        pulse.close()

    async def test_retried_dead_job_runs_again(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        runs: list[int] = []

        async def decline_once(_: Any) -> None:
            runs.append(current_job().attempt)
            if len(runs) == 1:
                raise NoRetry("card declined")

        pulse.handle("charge", decline_once)
        job_id = await pulse.enqueue("charge", config=JobConfig(max_retries=3))
        async with pulse:
            first = await pulse.wait(job_id)
            await pulse.retry(job_id)
            second = await pulse.wait(job_id)

        assert first.status is JobStatus.DEAD
        assert second.status is JobStatus.COMPLETED
        assert runs == [1, 1]


class TestTimeouts:
    async def test_timeout_cancels_and_fails_attempt(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        cancelled: list[float] = []

        async def hang(_: Any) -> None:
            try:
                await trio.sleep_forever()
            finally:
                cancelled.append(trio.current_time())

        pulse.handle("hang", hang)
        config = JobConfig(max_retries=1, retry_delay=2, timeout=10)
        start = trio.current_time()
        job_id = await pulse.enqueue_with_config("hang", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert cancelled == pytest.approx([start + 10, start + 22], abs=TIME_TOLERANCE)
        assert job.status is JobStatus.DEAD
        assert job.attempts == 2
        first, second = job.errors
        assert first.error == (
            "JobTimeout: attempt 1 timed out after 10 s (timeout is 10 s) "
            "and was cancelled"
        )
        assert second.error.startswith("JobTimeout: attempt 2 timed out after 10 s")
        # The traceback shows where the handler was when its time ran out.
        assert ", in hang\n" in first.traceback
        assert "await trio.sleep_forever()" in first.traceback

    async def test_hang_after_short_runs_stops_at_limit(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=1)
        spans: list[tuple[float, float]] = []

        async def short(_: Any) -> None:
            await trio.sleep(1)

        async def hang(_: Any) -> None:
            start = trio.current_time()
            try:
                await trio.sleep_forever()
            finally:
                spans.append((start, trio.current_time()))

        pulse.handle("short", short)
        pulse.handle("hang", hang)
        # Short runs under the default limit of 300 s come first. The hang's
        # shorter limit must still hold to the instant.
        ids = await pulse.enqueue_many("short", range(20))
        ids.append(
            await pulse.enqueue_with_config(
                "hang", None, JobConfig.no_retry(timeout=10)
            )
        )

        async with pulse:
            jobs = await wait_finished(pulse, ids)

        [(start, end)] = spans
        assert end - start == pytest.approx(10, abs=1e-6)
        assert [job.status for job in jobs[:-1]] == [JobStatus.COMPLETED] * 20
        assert jobs[-1].status is JobStatus.DEAD
        assert jobs[-1].last_error is not None
        assert "timed out after 10 s" in jobs[-1].last_error

    async def test_limit_of_run_ends_with_it(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(workers=1)

        async def nap(seconds: float) -> None:
            await trio.sleep(seconds)

        pulse.handle("nap", nap)
        # The first run uses most of its limit. The runs after it on the same
        # worker have a later limit or none, and its limit must not cut them.
        ids = [
            await pulse.enqueue_with_config("nap", 7, JobConfig.no_retry(timeout=10)),
            await pulse.enqueue_with_config("nap", 50, JobConfig.no_retry(timeout=60)),
            await pulse.enqueue_with_config(
                "nap", 1000, JobConfig.no_retry(timeout=None)
            ),
        ]

        async with pulse:
            jobs = await wait_finished(pulse, ids, interval=60, limit=7200)

        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 3
        assert [job.errors for job in jobs] == [()] * 3

    async def test_later_run_with_earlier_limit_stops_on_time(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=2)
        ends: dict[str, float] = {}
        starts: dict[str, float] = {}

        async def sleep_or_hang(name: str) -> None:
            starts[name] = trio.current_time()
            try:
                if name == "long":
                    await trio.sleep(500)
                else:
                    await trio.sleep_forever()
            finally:
                ends[name] = trio.current_time()

        pulse.handle("run", sleep_or_hang)
        long_id = await pulse.enqueue_with_config(
            "run", "long", JobConfig.no_retry(timeout=1000)
        )

        async with pulse:
            await wait_for_status(pulse, long_id, [JobStatus.RUNNING])
            await trio.sleep(1)
            hang_id = await pulse.enqueue_with_config(
                "run", "hang", JobConfig.no_retry(timeout=10)
            )
            jobs = await wait_finished(pulse, [long_id, hang_id], interval=60)

        assert ends["hang"] - starts["hang"] == pytest.approx(10, abs=1e-6)
        assert ends["long"] - starts["long"] == pytest.approx(500, abs=1e-6)
        assert [job.status for job in jobs] == [JobStatus.COMPLETED, JobStatus.DEAD]

    async def test_checkpoint_past_limit_times_out(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def compute_then_await(_: Any) -> None:
            # 15 s of work that never awaits, as a blocked event loop.
            mock_clock().jump(15)
            await trio.lowlevel.checkpoint()

        pulse.handle("work", compute_then_await)
        config = JobConfig.no_retry(timeout=10)
        job_id = await pulse.enqueue_with_config("work", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert job.status is JobStatus.DEAD
        assert job.last_error is not None
        assert job.last_error.startswith("JobTimeout: attempt 1 timed out after 15 s")

    async def test_sleep_past_limit_in_blocked_loop(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        ran_on: list[bool] = []

        async def nap(_: Any) -> None:
            await trio.sleep(20)
            ran_on.append(True)

        pulse.handle("nap", nap)
        config = JobConfig.no_retry(timeout=10)
        job_id = await pulse.enqueue_with_config("nap", None, config)

        async with pulse:
            await wait_for_status(pulse, job_id, [JobStatus.RUNNING], interval=1)
            # The loop is blocked past both the limit and the end of the
            # sleep, which then wake together: the limit wins.
            mock_clock().jump(30)
            [job] = await wait_finished(pulse, [job_id])

        assert ran_on == []
        assert job.status is JobStatus.DEAD
        assert job.last_error is not None
        assert job.last_error.startswith("JobTimeout: attempt 1 timed out")

    async def test_timeout_with_fraction_of_second(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def hang(_: Any) -> None:
            await trio.sleep_forever()

        pulse.handle("hang", hang)
        config = JobConfig.no_retry(timeout=timedelta(milliseconds=1500))
        job_id = await pulse.enqueue_with_config("hang", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert job.last_error is not None
        assert "timed out after 1.5 s" in job.last_error

    async def test_retry_never_overlaps_timed_out_run(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=3)
        intervals: list[tuple[float, float]] = []

        async def slow_cleanup(_: Any) -> None:
            start = trio.current_time()
            try:
                await trio.sleep_forever()
            finally:
                # Cleanup that outlives the cancellation by three seconds.
                with trio.CancelScope(shield=True):
                    await trio.sleep(3)
                intervals.append((start, trio.current_time()))

        pulse.handle("slow", slow_cleanup)
        config = JobConfig(max_retries=3, retry_delay=0, timeout=5)
        job_id = await pulse.enqueue_with_config("slow", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert len(intervals) == 4
        for (_, end), (next_start, _) in itertools.pairwise(intervals):
            assert next_start >= end
        assert job.attempts == 4
        assert all("timed out after 8 s" in error.error for error in job.errors)

    async def test_many_short_sleeps_within_timeout(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=2)

        async def many_sleeps(count: int) -> None:
            for _ in range(count):
                await trio.sleep(0.009)

        pulse.handle("sleeps", many_sleeps)
        config = JobConfig.no_retry(timeout=10)
        # 1,000 sleeps of 9 ms add up to 9 s, within the 10 s timeout.
        ids = await pulse.enqueue_many("sleeps", [1000, 1000], config)

        async with pulse:
            ids += await pulse.enqueue_many("sleeps", [500] * 3, config)
            jobs = await wait_finished(pulse, ids)

        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 5
        assert all(job.errors == () for job in jobs)

    async def test_no_timeout_allows_long_run(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def long_run(_: Any) -> None:
            await trio.sleep(3600)  # twelve times the default timeout

        pulse.handle("long", long_run)
        config = JobConfig.no_retry(timeout=None)
        job_id = await pulse.enqueue_with_config("long", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id], interval=60, limit=7200)

        assert job.status is JobStatus.COMPLETED

    async def test_sync_handler_under_timeout_completes(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        threads: list[int] = []

        def compute(count: int) -> None:
            threads.append(threading.get_ident())
            assert sum(range(count)) > 0

        pulse.handle("compute", compute)
        config = JobConfig.no_retry(timeout=1)
        start = trio.current_time()
        ids = await pulse.enqueue_many("compute", [200_000] * 5, config)

        async with pulse:
            jobs = await wait_finished(pulse, ids, interval=0.01)
            elapsed = trio.current_time() - start

        # While the thread runs every task is blocked, so an autojumping
        # clock would leap to the 1 s timeout if the queue did not pause it.
        assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 5
        assert elapsed < 1
        assert threading.get_ident() not in threads


class TestHandlerErrors:
    async def test_exception_stored_with_traceback(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def reject_input(payload: dict[str, Any]) -> None:
            raise KeyError(f"missing field {payload['field']!r}")

        pulse.handle("reject", reject_input)
        job_id = await pulse.enqueue_with_config(
            "reject", {"field": "email"}, JobConfig.no_retry()
        )

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        [error] = job.errors
        assert error.attempt == 1
        assert error.error == "KeyError: \"missing field 'email'\""
        assert job.last_error == error.error
        assert error.traceback.startswith("Traceback (most recent call last):")
        assert "in reject_input" in error.traceback
        assert error.traceback.rstrip().endswith("KeyError: \"missing field 'email'\"")
        assert error.failed_at == job.finished_at

    async def test_error_history_keeps_last_runs(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def always_fail(_: Any) -> None:
            raise ValueError(f"run {current_job().attempt}")

        pulse.handle("fail", always_fail)
        job_id = await pulse.enqueue_with_config(
            "fail", None, JobConfig(max_retries=29, retry_delay=0)
        )
        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert job.status is JobStatus.DEAD
        assert job.attempts == 30
        assert [error.attempt for error in job.errors] == list(range(11, 31))
        assert job.errors[-1].error == "ValueError: run 30"
        assert job.last_error == "ValueError: run 30"

    async def test_exception_group_from_handler_nursery(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def fail_in_child() -> None:
            raise ValueError("child failed")

        async def with_nursery(_: Any) -> None:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(fail_in_child)
                nursery.start_soon(trio.sleep_forever)

        pulse.handle("group", with_nursery)
        config = JobConfig(max_retries=1, retry_delay=0)
        job_id = await pulse.enqueue_with_config("group", None, config)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert job.status is JobStatus.DEAD
        assert job.attempts == 2
        for error in job.errors:
            assert error.error.startswith("ExceptionGroup: ")
            assert "ValueError: child failed" in error.traceback
            assert "in fail_in_child" in error.traceback

    async def test_handler_own_timeout_is_plain_failure(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        async def raise_runtime(_: Any) -> None:
            raise RuntimeError("plain failure")

        async def raise_timeout_itself(_: Any) -> None:
            # A TooSlowError that the handler's own fail_after raised is a
            # plain failure, not the job's timeout.
            with trio.fail_after(1):
                await trio.sleep_forever()

        pulse.handle("runtime", raise_runtime)
        pulse.handle("inner_timeout", raise_timeout_itself)
        config = JobConfig.no_retry(timeout=60)
        runtime = await pulse.enqueue_with_config("runtime", None, config)
        inner = await pulse.enqueue_with_config("inner_timeout", None, config)

        async with pulse:
            jobs = await wait_finished(pulse, [runtime, inner])

        assert jobs[0].last_error == "RuntimeError: plain failure"
        assert jobs[1].last_error is not None
        assert jobs[1].last_error.startswith("TooSlowError")
        assert "in raise_timeout_itself" in jobs[1].errors[0].traceback


async def test_error_raised_after_timeout_says_timed_out(
    open_queue: OpenQueue,
) -> None:
    pulse = await open_queue()

    async def raises_while_cancelled(_: Any) -> None:
        try:
            await trio.sleep_forever()
        finally:
            raise RuntimeError("cleanup failed")

    pulse.handle("messy", raises_while_cancelled)
    job_id = await pulse.enqueue_with_config(
        "messy", None, JobConfig(max_retries=0, timeout=3)
    )
    async with pulse:
        job = await pulse.wait(job_id)

    assert job.status is JobStatus.DEAD
    assert job.last_error is not None
    assert job.last_error.startswith("JobTimeout: attempt 1 timed out after 3 s")
    assert "while cancelled it raised RuntimeError: cleanup failed" in job.last_error
    assert "RuntimeError: cleanup failed" in job.errors[0].traceback
