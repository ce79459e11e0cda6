"""Reported statuses and the dead-letter queue."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
import trio
import trio.testing

from pulse_trio import (
    EventKind,
    JobConfig,
    JobEvent,
    JobNotDead,
    JobNotFound,
    JobPriority,
    JobRunning,
    JobStatus,
    Pulse,
    PulseError,
    _pulse,
    current_job,
)

from .helpers import hang_after_start, read_job_row, wait_finished, wait_for_status

OpenQueue = Callable[..., Awaitable[Pulse]]


async def always_fail(_: Any) -> None:
    raise ValueError("always fails")


class TestStatus:
    async def test_unknown_id_raises_lookup_error(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(
            JobNotFound, match=r"no job with id 'missing' exists"
        ) as info:
            await pulse.status("missing")

        assert isinstance(info.value, LookupError)
        assert isinstance(info.value, PulseError)
        assert info.value.job_id == "missing"

    async def test_due_job_is_pending(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        job_id = await pulse.enqueue("later", {"n": 1})

        job = await pulse.status(job_id)

        assert job.status is JobStatus.PENDING
        assert job.id == job_id
        assert job.name == "later"
        assert job.payload == {"n": 1}
        assert job.attempts == 0
        assert job.priority is JobPriority.NORMAL
        assert job.last_error is None
        assert job.errors == ()
        assert job.started_at is None
        assert job.finished_at is None
        assert job.run_at == job.created_at

    async def test_future_job_is_scheduled_until_due(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        job_id = await pulse.schedule("later", None, delay=60)

        assert (await pulse.status(job_id)).status is JobStatus.SCHEDULED
        await trio.sleep(59.9)
        assert (await pulse.status(job_id)).status is JobStatus.SCHEDULED
        await trio.sleep(0.2)
        assert (await pulse.status(job_id)).status is JobStatus.PENDING

    async def test_running_job_is_running(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        seen: list[JobStatus] = []
        release = trio.Event()

        async def look_at_self(_: Any) -> None:
            seen.append((await pulse.status(current_job().id)).status)
            await release.wait()

        pulse.handle("look", look_at_self)
        job_id = await pulse.enqueue("look")

        async with pulse:
            running = await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
            release.set()
            [job] = await wait_finished(pulse, [job_id])

        assert seen == [JobStatus.RUNNING]
        assert running.attempts == 1
        assert running.started_at is not None
        assert job.status is JobStatus.COMPLETED
        assert job.finished_at is not None
        assert job.finished_at >= running.started_at

    async def test_failed_job_is_retrying_then_pending(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        pulse.handle("fail", always_fail)
        config = JobConfig(max_retries=1, retry_delay=100)
        job_id = await pulse.enqueue_with_config("fail", None, config)

        async with pulse:
            retrying = await wait_for_status(pulse, job_id, [JobStatus.RETRYING])
            assert retrying.attempts == 1
            assert retrying.last_error == "ValueError: always fails"
            [job] = await wait_finished(pulse, [job_id])

        assert job.status is JobStatus.DEAD

    async def test_retrying_job_reported_pending_once_due(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        pulse.handle("fail", always_fail)
        config = JobConfig(max_retries=1, retry_delay=100)
        job_id = await pulse.enqueue_with_config("fail", None, config)

        async with pulse:
            await wait_for_status(pulse, job_id, [JobStatus.RETRYING])
            await pulse.shutdown_graceful()

        # No queue runs now, so the job waits past its due time.
        await trio.sleep(200)
        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert read_job_row(pulse, job_id)["status"] == "retrying"

    async def test_completed_job_is_completed(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def succeed(_: Any) -> None:
            pass

        pulse.handle("ok", succeed)
        job_id = await pulse.enqueue("ok")

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1
        assert job.errors == ()


class TestDeadLetter:
    async def test_dead_jobs_lists_dead_in_order(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def succeed(_: Any) -> None:
            pass

        pulse.handle("fail", always_fail)
        pulse.handle("ok", succeed)
        first = await pulse.enqueue_with_config("fail", 1, JobConfig.no_retry())
        ok = await pulse.enqueue("ok")
        second = await pulse.enqueue_with_config(
            "fail", 2, JobConfig(max_retries=1, retry_delay=10)
        )

        assert await pulse.dead_jobs() == []
        async with pulse:
            await wait_finished(pulse, [first, ok, second])
            dead = await pulse.dead_jobs()

        assert [job.id for job in dead] == [first, second]
        assert [job.status for job in dead] == [JobStatus.DEAD] * 2
        assert [job.payload for job in dead] == [1, 2]

    async def test_retry_makes_dead_job_pending(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(workers=1)
        config = JobConfig(
            priority=JobPriority.HIGH, max_retries=1, retry_delay=0, timeout=30
        )
        unblock = trio.Event()

        async def block(_: Any) -> None:
            await unblock.wait()

        pulse.handle("fail", always_fail)
        pulse.handle("block", block)
        job_id = await pulse.enqueue_with_config("fail", {"k": "v"}, config)

        async with pulse:
            [dead] = await wait_finished(pulse, [job_id])
            # The only worker is busy, so the retried job waits as pending.
            blocker = await pulse.enqueue("block")
            await wait_for_status(pulse, blocker, [JobStatus.RUNNING])
            await trio.sleep(5)
            await pulse.retry(job_id)
            job = await pulse.status(job_id)
            dead_after_retry = await pulse.dead_jobs()
            unblock.set()
            [rerun] = await wait_finished(pulse, [job_id])

        assert dead.status is JobStatus.DEAD
        assert dead.finished_at is not None
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        assert job.config == config
        assert job.payload == {"k": "v"}
        assert job.finished_at is None
        assert job.run_at - dead.finished_at >= timedelta(seconds=5)
        # The error history stays.
        assert [error.attempt for error in job.errors] == [1, 2]
        assert dead_after_retry == []
        # The retried job gets its full set of runs again.
        assert rerun.status is JobStatus.DEAD
        assert rerun.attempts == 2
        assert len(rerun.errors) == 4

    async def test_retried_job_runs_again(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        attempts: list[int] = []
        healed = False

        async def fail_until_healed(_: Any) -> None:
            attempts.append(current_job().attempt)
            if not healed:
                raise ValueError("not healed yet")

        pulse.handle("heal", fail_until_healed)
        config = JobConfig(max_retries=1, retry_delay=0)
        job_id = await pulse.enqueue_with_config("heal", None, config)

        async with pulse:
            await wait_finished(pulse, [job_id])
            healed = True
            await pulse.retry(job_id)
            [job] = await wait_finished(pulse, [job_id])

        assert attempts == [1, 2, 1]
        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1

    async def test_retry_unknown_id_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(JobNotFound, match=r"no job with id 'nope' exists"):
            await pulse.retry("nope")

    async def test_retry_not_dead_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        job_id = await pulse.enqueue("waiting")

        with pytest.raises(
            JobNotDead, match=rf"job '{job_id}' is pending, not dead"
        ) as info:
            await pulse.retry(job_id)

        assert info.value.status == "pending"
        assert (await pulse.status(job_id)).status is JobStatus.PENDING

    async def test_retry_completed_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        async def succeed(_: Any) -> None:
            pass

        pulse.handle("ok", succeed)
        job_id = await pulse.enqueue("ok")
        async with pulse:
            await wait_finished(pulse, [job_id])
            with pytest.raises(JobNotDead, match=r"is completed, not dead"):
                await pulse.retry(job_id)

        assert (await pulse.status(job_id)).status is JobStatus.COMPLETED


class TestRetryAllDead:
    async def test_counts_each_dead_job_once(
        self, open_queue: OpenQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Jobs retried in an early chunk die again before the last chunk is
        # read; they must not be retried a second time.
        monkeypatch.setattr(_pulse, "PRUNE_CHUNK", 5)
        pulse = await open_queue(workers=4)
        pulse.handle("fails", always_fail)
        ids = await pulse.enqueue_many("fails", range(30), JobConfig.no_retry())
        async with pulse:
            await wait_finished(pulse, ids)

            retried = await pulse.retry_all_dead()
            finished = await wait_finished(pulse, ids)

        assert retried == 30
        assert [job.status for job in finished] == [JobStatus.DEAD] * 30
        assert [job.attempts for job in finished] == [1] * 30
        assert [len(job.errors) for job in finished] == [2] * 30

    async def test_name_filter(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("fails", always_fail)
        pulse.handle("other", always_fail)
        fails = await pulse.enqueue_with_config("fails", None, JobConfig.no_retry())
        other = await pulse.enqueue_with_config("other", None, JobConfig.no_retry())
        async with pulse:
            await wait_finished(pulse, [fails, other])
        retried = await pulse.retry_all_dead("fails")

        assert retried == 1
        assert (await pulse.status(fails)).status is JobStatus.PENDING
        assert (await pulse.status(other)).status is JobStatus.DEAD


class TestDelete:
    @pytest.mark.parametrize("state", ["pending", "scheduled", "dead", "completed"])
    async def test_deletes_job_at_rest(self, open_queue: OpenQueue, state: str) -> None:
        pulse = await open_queue()
        pulse.handle("fails", always_fail)
        pulse.handle("noop", lambda payload: None)
        other = await pulse.enqueue("unhandled", "kept")
        if state == "pending":
            job_id = await pulse.enqueue("unhandled")
        elif state == "scheduled":
            job_id = await pulse.schedule("noop", None, delay=3600)
        else:
            name = "fails" if state == "dead" else "noop"
            job_id = await pulse.enqueue(name, config=JobConfig.no_retry())
            async with pulse:
                await pulse.wait(job_id)

        await pulse.delete(job_id)

        with pytest.raises(JobNotFound):
            await pulse.status(job_id)
        assert (await pulse.status(other)).payload == "kept"

    async def test_deleted_job_never_runs(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        runs: list[object] = []
        pulse.handle("record", runs.append)
        doomed = await pulse.schedule("record", "doomed", delay=60)
        other = await pulse.schedule("record", "other", delay=60)

        await pulse.delete(doomed)
        async with pulse:
            await pulse.wait(other)

        assert runs == ["other"]

    async def test_running_job_cannot_be_deleted(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        started = trio.Event()
        pulse.handle("hang", hang_after_start(started))
        job_id = await pulse.enqueue("hang")
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await started.wait()
            with pytest.raises(JobRunning, match=r"is running and cannot be deleted"):
                await pulse.delete(job_id)
            await pulse.shutdown_now()

        assert (await pulse.status(job_id)).status is JobStatus.PENDING

    async def test_unknown_id_raises(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(JobNotFound, match=r"no job with id 'nope'"):
            await pulse.delete("nope")


class TestDeleteAll:
    async def test_deletes_waiting_jobs_of_a_name(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("fails", always_fail)
        dead = await pulse.enqueue("fails", config=JobConfig.no_retry())
        doomed = [
            await pulse.enqueue("report"),
            await pulse.schedule("report", None, delay=3600),
        ]
        invoice = await pulse.enqueue("invoice")
        async with pulse:
            await pulse.wait(dead)

        deleted = await pulse.delete_all(name="report")

        assert deleted == 2
        for job_id in doomed:
            with pytest.raises(JobNotFound):
                await pulse.status(job_id)
        assert (await pulse.status(invoice)).status is JobStatus.PENDING
        assert (await pulse.status(dead)).status is JobStatus.DEAD

    async def test_status_is_the_reported_one(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        due = await pulse.schedule("report", None, delay=60)
        later = await pulse.schedule("report", None, delay=3600)
        await trio.sleep(61)

        deleted = await pulse.delete_all(status="pending")

        assert deleted == 1
        with pytest.raises(JobNotFound):
            await pulse.status(due)
        assert (await pulse.status(later)).status is JobStatus.SCHEDULED

    async def test_running_jobs_are_left_alone(self, open_queue: OpenQueue) -> None:
        pulse = (await open_queue()).with_workers(1)
        started = trio.Event()
        pulse.handle("hang", hang_after_start(started))
        first = await pulse.enqueue("hang")
        second = await pulse.enqueue("hang")
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            await started.wait()
            deleted = await pulse.delete_all(name="hang")
            running = await pulse.status(first)
            await pulse.shutdown_now()

        assert deleted == 1
        assert running.status is JobStatus.RUNNING
        with pytest.raises(JobNotFound):
            await pulse.status(second)

    async def test_dry_run_counts_without_deleting(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        ids = await pulse.enqueue_many("report", range(3))

        counted = await pulse.delete_all(name="report", dry_run=True)

        assert counted == 3
        assert len(await pulse.list_jobs(name="report")) == len(ids)

    async def test_deletes_more_jobs_than_one_chunk(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        count = 2 * _pulse.PRUNE_CHUNK + 7
        await pulse.enqueue_many("report", range(count))
        invoice = await pulse.enqueue("invoice")

        deleted = await pulse.delete_all(name="report", status=JobStatus.PENDING)

        assert deleted == count
        assert [job.id for job in await pulse.list_jobs()] == [invoice]

    async def test_each_deleted_job_is_logged(
        self, open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
    ) -> None:
        pulse = await open_queue()
        job_id = await pulse.schedule("report", None, delay=60)
        caplog.set_level(logging.INFO, logger="pulse_trio")

        await pulse.delete_all(name="report")

        assert f"job {job_id} (report): deleted while scheduled" in caplog.text

    async def test_keeps_jobs_stored_meanwhile(
        self, open_queue: OpenQueue, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Small windows and chunks, so that the call takes many steps.
        monkeypatch.setattr(_pulse, "SCAN_WINDOW", 100)
        monkeypatch.setattr(_pulse, "DELETE_CHUNK", 30)
        pulse = await open_queue()
        before = await pulse.enqueue_many("report", range(1000))
        started = trio.Event()
        late: list[str] = []

        async def enqueue_late() -> None:
            await started.wait()
            for index in range(20):
                late.append(await pulse.enqueue("report", {"late": index}))
                await trio.lowlevel.checkpoint()

        async def delete_reports() -> None:
            started.set()
            assert await pulse.delete_all(name="report") == len(before)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(enqueue_late)
            nursery.start_soon(delete_reports)

        left = [job.id for job in await pulse.list_jobs(limit=2000)]
        assert sorted(left) == sorted(late)

    async def test_keeps_job_with_reused_seq(self, open_queue: OpenQueue) -> None:
        # SQLite gives a new row the seq of the newest row once that row is
        # deleted, so the bulk delete must match ids, not seqs.
        pulse = await open_queue()
        ids = await pulse.enqueue_many("report", range(500))
        first_deleted = trio.Event()
        replacement: list[str] = []

        def on_event(event: JobEvent) -> None:
            if event.kind is EventKind.DELETED:
                first_deleted.set()

        pulse.add_listener(on_event)

        async def replace_newest() -> None:
            await first_deleted.wait()
            await pulse.delete(ids[-1])
            replacement.append(await pulse.enqueue("report", "new"))

        async with pulse, trio.open_nursery() as nursery:
            nursery.start_soon(replace_newest)
            await pulse.delete_all(name="report")

        assert [job.id for job in await pulse.list_jobs()] == replacement

    async def test_no_match_still_checkpoints(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        await pulse.enqueue("report")

        with trio.testing.assert_checkpoints():
            assert await pulse.delete_all(name="invoice") == 0

    @pytest.mark.parametrize(
        ("arguments", "error", "message"),
        [
            ({}, ValueError, r"needs name=, status= or both"),
            (
                {"name": "report", "dry_run": "no"},
                TypeError,
                r"dry_run must be True or False, not 'no'",
            ),
            ({"status": "running"}, ValueError, r"status cannot be running"),
            ({"status": "gone"}, ValueError, r"invalid job status 'gone'"),
            ({"name": 7}, PulseError, r"job name must be a str, not int"),
        ],
        ids=[
            "no-filter",
            "dry-run-not-bool",
            "running",
            "unknown-status",
            "name-not-str",
        ],
    )
    async def test_bad_arguments_delete_nothing(
        self,
        open_queue: OpenQueue,
        arguments: dict[str, Any],
        error: type[Exception],
        message: str,
    ) -> None:
        pulse = await open_queue()
        job_id = await pulse.enqueue("report")

        with pytest.raises(error, match=message):
            await pulse.delete_all(**arguments)

        assert (await pulse.status(job_id)).status is JobStatus.PENDING


class TestPurge:
    async def test_dry_run_counts_without_deleting(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("noop", lambda payload: None)
        ids = await pulse.enqueue_many("noop", range(3))
        async with pulse:
            await wait_finished(pulse, ids)
            await trio.sleep(3600)
            recent = await pulse.enqueue("noop")
            await pulse.wait(recent)

        counted = await pulse.purge(JobStatus.COMPLETED, 1800, dry_run=True)
        assert counted == 3
        assert len(await pulse.list_jobs(JobStatus.COMPLETED)) == 4

        deleted = await pulse.purge(JobStatus.COMPLETED, 1800)
        assert deleted == 3
        assert [job.id for job in await pulse.list_jobs(JobStatus.COMPLETED)] == [
            recent
        ]


class TestStatusArguments:
    async def test_status_values_accepted_as_strings(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        pulse.handle("fails", always_fail)
        job_id = await pulse.enqueue("fails", config=JobConfig.no_retry())
        async with pulse:
            await pulse.wait(job_id)
            await trio.sleep(1)

        assert [job.id for job in await pulse.list_jobs("dead")] == [job_id]
        assert [job.id for job in await pulse.list_jobs(status="DEAD")] == [job_id]
        assert await pulse.purge("dead", 0, dry_run=True) == 1

    async def test_invalid_status_names_the_choices(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        with pytest.raises(ValueError, match=r"invalid job status 'gone'; use a "):
            await pulse.list_jobs("gone")
        with pytest.raises(
            ValueError,
            match=r"purge\(\) deletes only completed or dead jobs, not pending ones",
        ):
            await pulse.purge("pending", 0)


class TestAfterShutdownAndClose:
    async def test_retry_works_after_shutdown(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("fails", always_fail)
        job_id = await pulse.enqueue_with_config("fails", None, JobConfig.no_retry())
        async with pulse:
            await pulse.drain()

        await pulse.retry(job_id)

        job = await pulse.status(job_id)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0

    async def test_closed_queue_rejects_reads(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        job_id = await pulse.enqueue("later")
        pulse.close()

        with pytest.raises(PulseError, match=r"was closed; open a new Pulse"):
            await pulse.status(job_id)
        with pytest.raises(PulseError, match=r"was closed"):
            await pulse.dead_jobs()
        with pytest.raises(PulseError, match=r"was closed"):
            pulse.statistics()
        with pytest.raises(PulseError, match=r"was closed"):
            await pulse.enqueue("later")
        with pytest.raises(PulseError, match=r"was closed"):
            await pulse.retry(job_id)
