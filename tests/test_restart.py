"""A new queue on the same file takes over the jobs of an earlier one."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import DatabaseError, JobConfig, JobStatus, Pulse, current_job

from .helpers import read_file_rows, wait_finished, wait_for_status

OpenFileQueue = Callable[..., Awaitable[Pulse]]


async def test_jobs_enqueued_earlier_run_after_restart(
    open_file_queue: OpenFileQueue,
) -> None:
    producer = await open_file_queue()
    ids = await producer.enqueue_many("record", ["a", "b", "c"])
    producer.close()

    consumer = await open_file_queue()
    runs: list[str] = []

    async def record(label: str) -> None:
        runs.append(label)

    consumer.handle("record", record)
    async with consumer:
        jobs = await wait_finished(consumer, ids)

    assert runs == ["a", "b", "c"]
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 3


async def test_completed_jobs_not_rerun(open_file_queue: OpenFileQueue) -> None:
    runs: list[tuple[int, str]] = []

    def handler_for(generation: int) -> Callable[[str], Awaitable[None]]:
        async def record(label: str) -> None:
            runs.append((generation, label))

        return record

    first = await open_file_queue()
    first.handle("record", handler_for(1))
    done = await first.enqueue_many("record", ["a", "b"])
    async with first:
        await wait_finished(first, done)
    first.close()

    second = await open_file_queue()
    second.handle("record", handler_for(2))
    new = await second.enqueue("record", "c")
    async with second:
        await wait_finished(second, [new])
        await trio.sleep(120)

    assert runs == [(1, "a"), (1, "b"), (2, "c")]
    for job_id in done:
        job = await second.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1


async def test_immediate_shutdown_reruns_after_restart(
    open_file_queue: OpenFileQueue, database_path: Path
) -> None:
    attempts: list[tuple[int, int]] = []

    first = await open_file_queue(workers=2)

    async def hang(_: Any) -> None:
        attempts.append((1, current_job().attempt))
        await trio.sleep_forever()

    first.handle("work", hang)
    config = JobConfig(max_retries=0, timeout=None)
    ids = await first.enqueue_many("work", [1, 2], config)
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        for job_id in ids:
            await wait_for_status(first, job_id, [JobStatus.RUNNING])
        await first.shutdown_now()
    first.close()

    rows = read_file_rows(
        database_path, "SELECT status, attempts, owner FROM pulse_jobs ORDER BY seq"
    )
    assert [tuple(row) for row in rows] == [("pending", 0, None)] * 2

    second = await open_file_queue(workers=2)

    async def finish(_: Any) -> None:
        attempts.append((2, current_job().attempt))

    second.handle("work", finish)
    async with second:
        jobs = await wait_finished(second, ids)

    # max_retries=0 allows one run, and the cancelled run did not use it.
    assert sorted(attempts) == [(1, 1), (1, 1), (2, 1), (2, 1)]
    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 2
    assert [job.attempts for job in jobs] == [1, 1]
    assert [job.errors for job in jobs] == [(), ()]


async def test_graceful_timeout_reruns_after_restart(
    open_file_queue: OpenFileQueue,
) -> None:
    first = await open_file_queue()

    async def slow(_: Any) -> None:
        await trio.sleep(3600)

    first.handle("slow", slow)
    job_id = await first.enqueue_with_config("slow", None, JobConfig(timeout=None))
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        await wait_for_status(first, job_id, [JobStatus.RUNNING])
        await first.shutdown_graceful(timeout=10)
    first.close()

    second = await open_file_queue()
    attempts: list[int] = []

    async def quick(_: Any) -> None:
        attempts.append(current_job().attempt)

    second.handle("slow", quick)
    async with second:
        [job] = await wait_finished(second, [job_id])

    assert attempts == [1]
    assert job.status is JobStatus.COMPLETED


async def test_retrying_job_keeps_due_time_after_restart(
    open_file_queue: OpenFileQueue,
) -> None:
    first = await open_file_queue()

    async def fail(_: Any) -> None:
        raise ValueError("first run fails")

    first.handle("flaky", fail)
    config = JobConfig(max_retries=1, retry_delay=600)
    job_id = await first.enqueue_with_config("flaky", None, config)
    async with first:
        retrying = await wait_for_status(first, job_id, [JobStatus.RETRYING])
    first.close()

    second = await open_file_queue()
    starts: list[float] = []

    async def succeed(_: Any) -> None:
        starts.append(trio.current_time())

    second.handle("flaky", succeed)
    restart = trio.current_time()
    async with second:
        await trio.sleep(500)
        assert starts == []
        [job] = await wait_finished(second, [job_id], interval=1)

    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 2
    assert retrying.run_at - retrying.errors[0].failed_at == config.retry_delay
    assert starts[0] - restart < 600


async def test_missing_folder_raises(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "queue.db"

    with pytest.raises(DatabaseError, match=r"folder .*missing' does not exist"):
        await Pulse.new(path)

    assert not path.parent.exists()


async def test_non_database_file_raises(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("these are not the pages of an SQLite database\n" * 100)

    with pytest.raises(DatabaseError, match=r"notes\.txt"):
        await Pulse.new(path)

    assert path.read_text().startswith("these are not")


async def test_reopen_keeps_schema_and_jobs(
    open_file_queue: OpenFileQueue, database_path: Path
) -> None:
    first = await open_file_queue()
    job_id = await first.enqueue("job", {"kept": True})
    first.close()

    second = await open_file_queue()
    third = await open_file_queue()

    assert (await second.status(job_id)).payload == {"kept": True}
    assert (await third.status(job_id)).status is JobStatus.PENDING
    [row] = read_file_rows(database_path, "SELECT count(*) AS n FROM pulse_jobs")
    assert row["n"] == 1


class TestOpenExistingOnly:
    async def test_missing_file_not_created(self, tmp_path: Path) -> None:
        path = tmp_path / "absent.db"

        with pytest.raises(DatabaseError, match=r"not found; check the path"):
            await Pulse.new(path, create=False)

        assert not path.exists()

    async def test_foreign_database_left_unchanged(self, tmp_path: Path) -> None:
        path = tmp_path / "other.db"
        with sqlite3.connect(path) as conn:
            conn.execute("CREATE TABLE notes (body TEXT)")
        conn.close()

        with pytest.raises(DatabaseError, match=r"is not a pulse-trio database"):
            await Pulse.new(path, create=False)

        with sqlite3.connect(path) as conn:
            tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
        conn.close()
        assert tables == ["notes"]

    async def test_existing_queue_opens(self, tmp_path: Path) -> None:
        path = tmp_path / "queue.db"
        first = await Pulse.new(path)
        job_id = await first.enqueue("later")
        first.close()

        again = await Pulse.new(path, create=False)
        try:
            assert (await again.status(job_id)).name == "later"
        finally:
            again.close()
