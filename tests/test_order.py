"""Which due job runs first, and how many run at once."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import Any

import trio

from pulse_trio import JobConfig, JobPriority, Pulse

from .helpers import read_job_row, wait_finished

OpenQueue = Callable[..., Awaitable[Pulse]]


def record_into(runs: list[Any]) -> Callable[[Any], Awaitable[None]]:
    async def record(payload: Any) -> None:
        runs.append(payload)

    return record


async def test_higher_priority_runs_first(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[str] = []
    pulse.handle("record", record_into(runs))
    ids = []
    for label, priority in [
        ("low", JobPriority.LOW),
        ("normal", JobPriority.NORMAL),
        ("critical", JobPriority.CRITICAL),
        ("high", JobPriority.HIGH),
    ]:
        config = JobConfig(priority=priority)
        ids.append(await pulse.enqueue_with_config("record", label, config))

    async with pulse:
        await wait_finished(pulse, ids)

    assert runs == ["critical", "high", "normal", "low"]


async def test_equal_priority_runs_in_enqueue_order(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[int] = []
    pulse.handle("record", record_into(runs))
    ids = [await pulse.enqueue("record", index) for index in range(20)]

    async with pulse:
        await wait_finished(pulse, ids)

    assert runs == list(range(20))


async def test_same_due_time_runs_in_insertion_order(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[int] = []
    pulse.handle("record", record_into(runs))
    # enqueue_many gives every job the same due time, so only the insertion
    # order can break the tie.
    ids = await pulse.enqueue_many("record", range(50))
    times = {(await pulse.status(job_id)).run_at for job_id in ids}
    assert len(times) == 1

    async with pulse:
        await wait_finished(pulse, ids)

    assert runs == list(range(50))


async def test_earlier_due_time_runs_first(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[str] = []
    pulse.handle("record", record_into(runs))
    later = await pulse.schedule("record", "later", delay=10)
    sooner = await pulse.schedule("record", "sooner", delay=5)
    await trio.sleep(20)
    now = await pulse.enqueue("record", "now")

    async with pulse:
        await wait_finished(pulse, [later, sooner, now])

    assert runs == ["sooner", "later", "now"]


async def test_priority_beats_due_time(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[str] = []
    pulse.handle("record", record_into(runs))
    old = await pulse.enqueue_with_config(
        "record", "old low", JobConfig(priority=JobPriority.LOW)
    )
    await trio.sleep(60)
    new = await pulse.enqueue_with_config(
        "record", "new high", JobConfig(priority=JobPriority.HIGH)
    )

    async with pulse:
        await wait_finished(pulse, [old, new])

    assert runs == ["new high", "old low"]


async def test_order_holds_across_job_names(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[int] = []
    # More names than one claim query covers (CLAIM_NAMES_PER_QUERY in
    # pulse_trio._sql), so the candidates of several queries are merged.
    names = [f"job-{number:03d}" for number in range(120)]
    for name in names:
        pulse.handle(name, record_into(runs))
    priorities = list(JobPriority)
    expected: list[tuple[int, int]] = []
    ids = []
    for number in range(240):
        priority = priorities[(number * 7) % len(priorities)]
        name = names[(number * 37) % len(names)]
        config = JobConfig(priority=priority)
        ids.append(await pulse.enqueue_with_config(name, number, config))
        expected.append((-priority, number))

    async with pulse:
        await wait_finished(pulse, ids)

    assert runs == [number for _, number in sorted(expected)]


async def test_retried_job_keeps_priority(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    runs: list[str] = []

    async def fail_first_run(label: str) -> None:
        runs.append(label)
        if runs.count(label) == 1:
            raise RuntimeError("first run fails")

    pulse.handle("flaky", fail_first_run)
    pulse.handle("record", record_into(runs))
    config = JobConfig(priority=JobPriority.HIGH, retry_delay=0)
    flaky = await pulse.enqueue_with_config("flaky", "high", config)
    others = await pulse.enqueue_many("record", ["normal 1", "normal 2"])

    async with pulse:
        jobs = await wait_finished(pulse, [flaky, *others])

    # The retry is due at once, so its priority puts it before the normal
    # jobs that were due earlier.
    assert runs == ["high", "high", "normal 1", "normal 2"]
    assert jobs[0].priority is JobPriority.HIGH
    assert jobs[0].attempts == 2
    assert read_job_row(pulse, flaky)["priority"] == int(JobPriority.HIGH)


async def test_workers_limit_concurrent_runs(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=3)
    running = 0
    max_running = 0

    async def overlap(seconds: float) -> None:
        nonlocal running, max_running
        running += 1
        max_running = max(max_running, running)
        try:
            await trio.sleep(seconds)
        finally:
            running -= 1

    pulse.handle("overlap", overlap)
    ids = await pulse.enqueue_many("overlap", [0.5 + (i % 4) * 0.25 for i in range(40)])
    async with pulse:
        ids += await pulse.enqueue_many("overlap", [0.1] * 20)
        jobs = await wait_finished(pulse, ids)

    assert max_running == 3
    assert all(job.attempts == 1 for job in jobs)


async def test_sync_workers_limit_concurrent_runs(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=2)
    guard = threading.Lock()
    running = 0
    max_running = 0

    def overlap(_: Any) -> None:
        nonlocal running, max_running
        with guard:
            running += 1
            max_running = max(max_running, running)
        assert sum(range(20_000)) > 0  # a little work in the thread
        with guard:
            running -= 1

    pulse.handle("overlap", overlap)
    ids = await pulse.enqueue_many("overlap", range(30))
    async with pulse:
        jobs = await wait_finished(pulse, ids)

    assert 1 <= max_running <= 2
    assert all(job.attempts == 1 for job in jobs)


async def test_with_workers_sets_count(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=1)
    assert pulse.with_workers(4) is pulse
    assert pulse.workers == 4
