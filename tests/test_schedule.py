"""Jobs due at a later time: schedule() and the stored due times."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import JobStatus, Pulse, _scheduler

from .helpers import count_jobs, read_file_rows, read_job_row, wait_finished

OpenQueue = Callable[..., Awaitable[Pulse]]

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

CLOCK_SKEW = 1.0
"""Tolerance in seconds between the test's wall clock and the queue's."""


def epoch_microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def record_start_times(pulse: Pulse) -> dict[Any, float]:
    starts: dict[Any, float] = {}

    async def record(label: Any) -> None:
        starts[label] = trio.current_time()

    pulse.handle("record", record)
    return starts


class TestScheduleArguments:
    async def test_naive_datetime_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        naive = datetime(2030, 1, 1, 12, 0)

        with pytest.raises(
            ValueError,
            match=r"run_at 2030-01-01T12:00:00 is a naive datetime; pass an aware one",
        ):
            await pulse.schedule("job", None, naive)

    async def test_run_at_must_be_datetime(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(
            TypeError, match=r"run_at must be an aware datetime, not int"
        ):
            await pulse.schedule("job", None, 1234)  # type: ignore[arg-type]

    async def test_needs_exactly_one_time(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        moment = datetime.now(UTC)

        with pytest.raises(ValueError, match=r"exactly one of run_at .* or delay"):
            await pulse.schedule("job", None)
        with pytest.raises(ValueError, match=r"exactly one of run_at .* or delay"):
            await pulse.schedule("job", None, moment, delay=5)

    async def test_negative_delay_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(ValueError, match=r"delay must not be negative, got -5"):
            await pulse.schedule("job", None, delay=-5)

    async def test_rejected_schedule_stores_nothing(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        with pytest.raises(ValueError, match=r"naive datetime"):
            await pulse.schedule("job", None, datetime(2030, 1, 1))

        assert count_jobs(pulse) == 0


class TestScheduledRuns:
    async def test_past_time_runs_at_once(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        starts = record_start_times(pulse)
        start = trio.current_time()
        job_id = await pulse.schedule(
            "record", "past", datetime.now(UTC) - timedelta(hours=1)
        )

        assert (await pulse.status(job_id)).status is JobStatus.PENDING
        async with pulse:
            await wait_finished(pulse, [job_id])

        assert starts["past"] - start < 0.1

    async def test_one_hour_ahead_runs_after_an_hour(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        starts = record_start_times(pulse)
        start = trio.current_time()
        job_id = await pulse.schedule(
            "record", "hour", datetime.now(UTC) + timedelta(hours=1)
        )

        async with pulse:
            await trio.sleep(3600 - CLOCK_SKEW)
            early = await pulse.status(job_id)
            [job] = await wait_finished(pulse, [job_id], interval=0.25)

        assert early.status is JobStatus.SCHEDULED
        assert early.attempts == 0
        assert starts["hour"] - start == pytest.approx(3600, abs=CLOCK_SKEW)
        assert job.status is JobStatus.COMPLETED

    async def test_delay_runs_after_exactly_the_delay(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        starts = record_start_times(pulse)

        async with pulse:
            start = trio.current_time()
            job_id = await pulse.schedule("record", "delay", delay=timedelta(hours=1))
            await trio.sleep(3599.9)
            early = await pulse.status(job_id)
            await wait_finished(pulse, [job_id])

        assert early.status is JobStatus.SCHEDULED
        assert starts["delay"] - start == pytest.approx(3600, abs=1e-3)

    async def test_delay_in_seconds(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        job_id = await pulse.schedule("later", None, delay=90)

        job = await pulse.status(job_id)

        assert job.run_at - job.created_at == timedelta(seconds=90)
        assert job.status is JobStatus.SCHEDULED

    async def test_other_timezones_compare_correctly(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue(workers=1)
        starts = record_start_times(pulse)
        now = datetime.now(UTC)
        west = timezone(timedelta(hours=-5))
        east = timezone(timedelta(hours=9, minutes=30))
        # As local clock readings, the western time looks earliest, but it
        # is the latest instant.
        at_west = (now + timedelta(minutes=30)).astimezone(west)
        at_east = (now + timedelta(minutes=10)).astimezone(east)
        at_utc = now + timedelta(minutes=20)
        ids = [
            await pulse.schedule("record", "west", at_west),
            await pulse.schedule("record", "east", at_east),
            await pulse.schedule("record", "utc", at_utc),
        ]

        jobs = [await pulse.status(job_id) for job_id in ids]
        async with pulse:
            await wait_finished(pulse, ids, interval=1)

        assert [job.run_at for job in jobs] == [at_west, at_east, at_utc]
        assert all(job.run_at.utcoffset() == timedelta(0) for job in jobs)
        assert sorted(starts, key=starts.__getitem__) == ["east", "utc", "west"]
        assert starts["west"] - starts["east"] == pytest.approx(1200, abs=CLOCK_SKEW)

    async def test_due_times_stored_as_utc_microseconds(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        moment = datetime(
            2031, 6, 1, 8, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2))
        )
        job_id = await pulse.schedule("later", None, moment)

        row = read_job_row(pulse, job_id)

        assert row["run_at"] == epoch_microseconds(moment)
        # 2031-06-01 06:30:15.123456 UTC, from calendar.timegm.
        assert row["run_at"] == 1_938_061_815_123_456
        assert (await pulse.status(job_id)).run_at == moment


class TestManyDueAtOnce:
    async def test_made_pending_in_chunks_until_all_run(
        self, open_queue: OpenQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Due jobs are made pending a chunk at a time, earliest first. The
        # first chunk here holds only jobs that no handler here runs, and
        # the claims must go on to the chunks after it.
        monkeypatch.setattr(_scheduler, "PROMOTE_CHUNK", 10)
        pulse = await open_queue(workers=2)
        runs: list[int] = []
        pulse.handle("handled", runs.append)
        due = datetime.now(UTC) + timedelta(seconds=60)
        for index in range(15):
            await pulse.schedule("unhandled", index, due)
        ids = [await pulse.schedule("handled", index, due) for index in range(5)]
        async with pulse:
            await trio.sleep(61)
            with trio.fail_after(1):
                await wait_finished(pulse, ids)

        assert sorted(runs) == list(range(5))


async def test_time_columns_are_integers(
    open_file_queue: Callable[..., Awaitable[Pulse]], database_path: Path
) -> None:
    pulse = await open_file_queue()
    starts = record_start_times(pulse)
    done = await pulse.enqueue("record", "now")
    later = await pulse.schedule("record", "later", delay=timedelta(days=2))
    async with pulse:
        await wait_finished(pulse, [done])

    columns = {
        row["name"]: row["type"]
        for row in read_file_rows(database_path, "PRAGMA table_info(pulse_jobs)")
    }
    types = read_file_rows(
        database_path,
        "SELECT id, typeof(run_at) AS run_at, typeof(created_at) AS created_at,"
        " typeof(started_at) AS started_at, typeof(finished_at) AS finished_at"
        " FROM pulse_jobs ORDER BY seq",
    )
    values = read_file_rows(
        database_path,
        "SELECT run_at, created_at FROM pulse_jobs WHERE id = ?",
        (later,),
    )

    for column in ("run_at", "created_at", "started_at", "finished_at"):
        assert columns[column] == "INTEGER", column
    assert [dict(row) for row in types] == [
        {
            "id": done,
            "run_at": "integer",
            "created_at": "integer",
            "started_at": "integer",
            "finished_at": "integer",
        },
        {
            "id": later,
            "run_at": "integer",
            "created_at": "integer",
            "started_at": "null",
            "finished_at": "null",
        },
    ]
    [row] = values
    assert row["run_at"] - row["created_at"] == 2 * 86_400 * 1_000_000
    # Stored microseconds are wall-clock time, not trio's monotonic clock.
    assert abs(row["created_at"] - epoch_microseconds(datetime.now(UTC))) < 60_000_000
    assert "now" in starts
