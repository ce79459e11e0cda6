"""Jumps of the wall clock while jobs are scheduled and running.

Due times are wall-clock instants, so the rules under a jump are:

- no early run: a job never starts while the wall clock reads earlier than
  its due time, whichever way the clock jumped since it was scheduled;
- no stall: once the wall clock reads at or past the due time, the job
  starts within one nap (``MAX_NAP``, 60 s), or at once if anything wakes
  the scheduler;
- no spurious timeout: run time limits are measured on trio's monotonic
  clock, which a wall-clock jump does not move.

A wall-clock jump is simulated by a ``system_time_ns`` function with an
offset that the test changes. These tests run on the real trio clock
(a MockClock would derive wall time from virtual time and never read the
system clock again), with ``MAX_NAP`` cut to a fraction of a second so a
nap ends within the test.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio

from pulse_trio import (
    JobConfig,
    JobStatus,
    Pulse,
    _clock,
    _pulse,
    _scheduler,
    current_job,
)

from .helpers import read_rows

HOUR_NS = 3600 * 10**9
TEST_NAP = 0.2
"""Seconds that MAX_NAP is cut to, so a jump is noticed within the test."""
SLACK = 1.0
"""Real seconds allowed on top of a nap for a loaded machine."""

OpenQueue = Callable[..., Awaitable[Pulse]]


class JumpingClock:
    """A system clock that reads the real time plus an offset."""

    def __init__(self) -> None:
        self.offset_ns = 0

    def time_ns(self) -> int:
        return time.time_ns() + self.offset_ns

    def now_us(self) -> int:
        return self.time_ns() // 1000

    def jump(self, seconds: float) -> None:
        self.offset_ns += int(seconds * 10**9)


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[JumpingClock]:
    """Give every queue opened in the test a clock that the test can jump."""
    jumping = JumpingClock()
    monkeypatch.setattr(
        _pulse, "WallClock", lambda: _clock.WallClock(system_time_ns=jumping.time_ns)
    )
    monkeypatch.setattr(_clock, "MAX_NAP", TEST_NAP)
    monkeypatch.setattr(_scheduler, "MAX_NAP", TEST_NAP)
    yield jumping


def run_real_time(test: Callable[[], Awaitable[None]], limit: float = 30.0) -> None:
    async def bounded() -> None:
        with trio.fail_after(limit):
            await test()

    trio.run(bounded)


class Starts:
    """Handler that records the wall time at which each run starts."""

    def __init__(self, clock: JumpingClock) -> None:
        self.clock = clock
        self.walls: list[int] = []
        self.monotonic: list[float] = []
        self.started = trio.Event()

    async def __call__(self, payload: Any) -> None:
        self.walls.append(self.clock.now_us())
        self.monotonic.append(time.monotonic())
        self.started.set()
        if payload:
            await trio.sleep(payload)


def due_time(pulse: Pulse, job_id: str) -> int:
    [row] = read_rows(pulse, "SELECT run_at FROM pulse_jobs WHERE id = ?", (job_id,))
    return int(row["run_at"])


def test_forward_jump_runs_due_job_within_nap(
    open_queue: OpenQueue, clock: JumpingClock
) -> None:
    async def main() -> None:
        pulse = await open_queue()
        starts = Starts(clock)
        pulse.handle("job", starts)
        async with pulse:
            hour = await pulse.schedule("job", None, delay=3600)
            later = await pulse.schedule("job", None, delay=3 * 3600)
            await trio.sleep(0.5)
            assert starts.walls == []

            clock.jump(3600)
            jumped = time.monotonic()
            with trio.fail_after(TEST_NAP + SLACK):
                await starts.started.wait()
            waited = starts.monotonic[0] - jumped
            await trio.sleep(0.5)

            assert len(starts.walls) == 1
            assert starts.walls[0] >= due_time(pulse, hour)
            assert (await pulse.status(later)).status is JobStatus.SCHEDULED
        pulse.close()
        print(f"\nstarted {waited * 1000:.0f} ms after a jump of one hour forward")

    run_real_time(main)


def test_backward_jump_never_runs_early(
    open_queue: OpenQueue, clock: JumpingClock
) -> None:
    async def main() -> None:
        pulse = await open_queue()
        starts = Starts(clock)
        pulse.handle("job", starts)
        async with pulse:
            job_id = await pulse.schedule("job", None, delay=1.0)
            due = due_time(pulse, job_id)
            await trio.sleep(0.3)
            clock.jump(-3600)
            # One real second later the job would have been due without the
            # jump, but the wall clock reads an hour earlier than its due time.
            await trio.sleep(1.5)
            assert starts.walls == []
            assert (await pulse.status(job_id)).status is JobStatus.SCHEDULED

            clock.jump(3600)
            with trio.fail_after(TEST_NAP + SLACK):
                await starts.started.wait()
        pulse.close()

        assert len(starts.walls) == 1
        assert starts.walls[0] >= due

    run_real_time(main)


def test_jumps_during_run_no_spurious_timeout(
    open_queue: OpenQueue, clock: JumpingClock
) -> None:
    async def main() -> None:
        pulse = await open_queue(workers=2)
        starts = Starts(clock)
        pulse.handle("job", starts)
        async with pulse:
            within = await pulse.enqueue_with_config(
                "job", 0.8, JobConfig(timeout=1.5, max_retries=0)
            )
            too_long = await pulse.enqueue_with_config(
                "job", 30, JobConfig(timeout=0.6, max_retries=0)
            )
            await trio.sleep(0.2)
            clock.jump(3600)
            await trio.sleep(0.2)
            clock.jump(-7200)
            started = time.monotonic()
            with trio.fail_after(5):
                finished = await pulse.wait(within)
                timed_out = await pulse.wait(too_long)
            took = time.monotonic() - started
        pulse.close()

        assert finished.status is JobStatus.COMPLETED
        assert finished.errors == ()
        assert timed_out.status is JobStatus.DEAD
        assert timed_out.last_error is not None
        assert timed_out.last_error.startswith("JobTimeout: attempt 1 timed out")
        # The 0.6 s limit ends about 0.2 s after the last jump, not an hour off.
        assert took < 0.6 + SLACK

    run_real_time(main)


def test_retry_due_after_forward_jump(
    open_queue: OpenQueue, clock: JumpingClock
) -> None:
    async def main() -> None:
        pulse = await open_queue()
        attempts: list[int] = []

        async def fail_first(payload: object) -> None:
            attempts.append(current_job().attempt)
            if len(attempts) == 1:
                raise RuntimeError("first run fails")

        pulse.handle("job", fail_first)
        async with pulse:
            job_id = await pulse.enqueue_with_config(
                "job", None, JobConfig(retry_delay=3600)
            )
            await trio.sleep(0.5)
            assert attempts == [1]
            assert (await pulse.status(job_id)).status is JobStatus.RETRYING

            clock.jump(3600)
            with trio.fail_after(TEST_NAP + SLACK):
                job = await pulse.wait(job_id)
        pulse.close()

        assert job.status is JobStatus.COMPLETED
        assert attempts == [1, 2]

    run_real_time(main)


async def open_two_on_file(open_file_queue: OpenQueue) -> tuple[Pulse, Pulse]:
    """Open a runner and a watcher queue on one file.

    The runner renews its lease every second; the watcher checks for dead
    owners every 0.2 s, so it finds the runner's lease expired right after a
    jump, before the runner renews it.
    """
    runner = await open_file_queue(lease=3.0)
    watcher = await open_file_queue(lease=0.6)
    # The watcher runs other jobs, so it never runs the runner's jobs itself.
    watcher.handle("other", _noop)
    return runner, watcher


async def _noop(payload: object) -> None:
    pass


def test_forward_jump_keeps_running_jobs(
    open_file_queue: OpenQueue, clock: JumpingClock
) -> None:
    # After a jump past the leases, each queue finds the other's lease
    # expired, yet both are alive, so neither may take the other's jobs.
    async def main() -> None:
        runner, watcher = await open_two_on_file(open_file_queue)
        starts = Starts(clock)
        runner.handle("job", starts)
        async with runner, watcher:
            job_id = await runner.enqueue("job", 1.5)
            await starts.started.wait()
            clock.jump(3600)
            with trio.fail_after(10):
                job = await runner.wait(job_id)
        runner.close()
        watcher.close()

        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1
        assert len(starts.walls) == 1

    run_real_time(main)


def test_forward_jump_then_claim_keeps_job(
    open_file_queue: OpenQueue, clock: JumpingClock
) -> None:
    # The jump is noticed while the runner is idle; its next job must not be
    # taken for an orphan either.
    async def main() -> None:
        runner, watcher = await open_two_on_file(open_file_queue)
        starts = Starts(clock)
        runner.handle("job", starts)
        async with runner, watcher:
            await trio.sleep(0.3)
            clock.jump(3600)
            await trio.sleep(0.5)  # more than one lease check of each queue
            job_id = await runner.enqueue("job", 1.0)
            with trio.fail_after(10):
                job = await runner.wait(job_id)
        runner.close()
        watcher.close()

        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1
        assert len(starts.walls) == 1

    run_real_time(main)
