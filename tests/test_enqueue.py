"""Storing jobs: enqueue, enqueue_many, payload and name checks."""

from __future__ import annotations

import math
import sqlite3
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import (
    HandlerError,
    InvalidJobName,
    InvalidPayload,
    JobStatus,
    Pulse,
    PulseError,
)
from pulse_trio._messages import Insert, Reply

from .helpers import count_jobs, read_file_rows, wait_finished

OpenQueue = Callable[..., Awaitable[Pulse]]


async def do_nothing(_: Any) -> None:
    pass


class TestEnqueue:
    async def test_jobs_wait_before_run(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        runs: list[int] = []

        async def record(number: int) -> None:
            runs.append(number)

        pulse.handle("record", record)
        ids = [await pulse.enqueue("record", number) for number in range(3)]
        await trio.sleep(60)

        assert count_jobs(pulse) == 3
        assert [(await pulse.status(i)).status for i in ids] == [JobStatus.PENDING] * 3
        assert runs == []

        async with pulse:
            await wait_finished(pulse, ids)

        assert runs == [0, 1, 2]

    async def test_enqueue_while_running(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(workers=2)
        runs: list[int] = []

        async def record(number: int) -> None:
            runs.append(number)

        pulse.handle("record", record)
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            first = await pulse.enqueue("record", 1)
            await wait_finished(pulse, [first])
            await trio.sleep(30)
            later = await pulse.enqueue_many("record", [2, 3])
            await wait_finished(pulse, later)
            await pulse.shutdown_graceful()

        assert sorted(runs) == [1, 2, 3]

    async def test_ids_are_unique_strings(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        ids = await pulse.enqueue_many("job", range(200))
        ids.append(await pulse.enqueue("job"))

        assert len(set(ids)) == 201
        assert all(isinstance(job_id, str) and job_id for job_id in ids)

    async def test_enqueue_many_empty(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        assert await pulse.enqueue_many("job", []) == []
        assert count_jobs(pulse) == 0

    async def test_enqueue_many_over_insert_chunk(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        ids = await pulse.enqueue_many("job", range(2500))

        assert count_jobs(pulse) == 2500
        assert (await pulse.status(ids[-1])).payload == 2499

    async def test_payload_round_trips(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        received: list[Any] = []

        async def record(payload: Any) -> None:
            received.append(payload)

        pulse.handle("record", record)
        payload = {
            "text": "grüße, 東京 🚀",
            "numbers": [1, -2, 3.5, 10**18],
            "nested": {"flag": True, "nothing": None, "list": [[], {}]},
        }
        job_id = await pulse.enqueue("record", payload)

        async with pulse:
            [job] = await wait_finished(pulse, [job_id])

        assert received == [payload]
        assert job.payload == payload

    async def test_payload_defaults_to_none(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        job_id = await pulse.enqueue("job")

        assert (await pulse.status(job_id)).payload is None


async def enqueue_from_many_tasks(pulse: Pulse) -> tuple[list[str], int]:
    """Enqueue 5 jobs from each of 40 tasks at once; return the job ids and
    how many transactions the queue committed meanwhile."""
    ids: list[str] = []

    async def produce() -> None:
        for index in range(5):
            ids.append(await pulse.enqueue("later", index))

    before = pulse._persistence._committed
    async with trio.open_nursery() as nursery:
        for _ in range(40):
            nursery.start_soon(produce)
    return ids, pulse._persistence._committed - before


class TestGroupCommit:
    async def test_concurrent_enqueues_share_commits(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()
        async with pulse:
            ids, commits = await enqueue_from_many_tasks(pulse)

        assert len(set(ids)) == 200
        assert count_jobs(pulse) == 200
        # Each round of 40 waiting tasks shares one commit.
        assert commits <= 10

    @pytest.mark.parametrize("synchronous", ["NORMAL", "FULL"])
    async def test_enqueues_share_commits_without_run(
        self, open_file_queue: OpenQueue, synchronous: str
    ) -> None:
        # A producer that never runs the queue commits by itself: the
        # enqueues of tasks woken together share its commit and its sync.
        pulse = await open_file_queue(synchronous=synchronous)

        ids, commits = await enqueue_from_many_tasks(pulse)

        assert len(set(ids)) == 200
        assert count_jobs(pulse) == 200
        # Alone, each of the 200 enqueues would commit by itself. How the
        # tasks split into groups depends on when each sync's thread ends,
        # so the bound leaves room: 11 to 27 commits were seen.
        assert commits <= 50, commits

    async def test_cancelled_first_caller_leaves_others(
        self, open_file_queue: OpenQueue, database_path: Path
    ) -> None:
        # The first caller of a group waits for the lock while another
        # caller's commit waits for a second connection's write lock.
        pulse = await open_file_queue()
        holder = sqlite3.connect(database_path, isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        stored: dict[str, str] = {}

        async def produce(label: str) -> None:
            stored[label] = await pulse.enqueue("later", label)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(produce, "blocked")
            await trio.sleep(0.01)
            first = trio.CancelScope()

            async def produce_first() -> None:
                with first:
                    await produce("cancelled")

            nursery.start_soon(produce_first)
            await trio.sleep(0.01)
            nursery.start_soon(produce, "joined")
            await trio.sleep(0.01)
            first.cancel()
            await trio.sleep(0.01)
            holder.execute("COMMIT")
        holder.close()

        assert first.cancelled_caught
        assert sorted(stored) == ["blocked", "joined"]
        payloads = [job.payload for job in await pulse.list_jobs()]
        assert sorted(payloads) == ["blocked", "joined"]

    async def test_failing_request_fails_alone(self, open_queue: OpenQueue) -> None:
        # Inserts merged into one statement are applied one by one again
        # when it fails, so the others of the batch are still stored.
        pulse = await open_queue()
        good = [
            ("good-" + str(index), "later", "1", "pending", 1, 3, 0, 0, None, 1, 1)
            for index in range(3)
        ]
        bad = ("bad", None, "1", "pending", 1, 3, 0, 0, None, 1, 1)
        replies: list[Reply[None]] = []

        async def send(row: tuple[Any, ...]) -> None:
            reply: Reply[None] = Reply()
            replies.append(reply)
            message = Insert(name="later", rows=(row,), due_now=True, reply=reply)
            await pulse._persistence.submit(message)

        async with pulse:
            for row in [good[0], bad, good[1], good[2]]:
                await send(row)
            outcomes = []
            for reply in replies:
                try:
                    await reply.wait()
                except Exception as exc:
                    outcomes.append(type(exc).__name__)
                else:
                    outcomes.append("stored")

        assert outcomes == ["stored", "IntegrityError", "stored", "stored"]
        assert count_jobs(pulse) == 3


class TestCommitBeforeReturn:
    async def test_enqueue_visible_to_other_connection(
        self, open_file_queue: OpenQueue, database_path: Path
    ) -> None:
        pulse = await open_file_queue()
        pulse.handle("job", do_nothing)

        before_run = await pulse.enqueue("job", "before")
        rows_before = read_file_rows(
            database_path, "SELECT status FROM pulse_jobs WHERE id = ?", (before_run,)
        )

        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            while_running = await pulse.enqueue("job", "during")
            rows_during = read_file_rows(
                database_path,
                "SELECT id FROM pulse_jobs WHERE id = ?",
                (while_running,),
            )
            many = await pulse.enqueue_many("job", range(10))
            count_many = read_file_rows(
                database_path,
                "SELECT count(*) AS n FROM pulse_jobs WHERE name = 'job'",
            )[0]["n"]
            scheduled = await pulse.schedule("job", None, delay=600)
            rows_scheduled = read_file_rows(
                database_path,
                "SELECT status FROM pulse_jobs WHERE id = ?",
                (scheduled,),
            )
            await pulse.shutdown_graceful()

        assert [row["status"] for row in rows_before] == ["pending"]
        assert len(rows_during) == 1
        assert count_many == 2 + len(many)
        assert [row["status"] for row in rows_scheduled] == ["scheduled"]


class TestPayloadChecks:
    @pytest.mark.parametrize(
        ("payload", "type_name"),
        [
            ({1, 2}, "set"),
            (datetime(2030, 1, 1, tzinfo=UTC), "datetime"),
            (object(), "object"),
            (b"bytes", "bytes"),
            ({"when": {"nested": {3}}}, "set"),
        ],
    )
    async def test_unencodable_payload_rejected(
        self, open_queue: OpenQueue, payload: Any, type_name: str
    ) -> None:
        pulse = await open_queue()

        with pytest.raises(
            InvalidPayload,
            match=rf"payload of job 'job' cannot be stored as JSON: "
            rf"Object of type {type_name} is not JSON serializable",
        ):
            await pulse.enqueue("job", payload)

        assert count_jobs(pulse) == 0

    @pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
    async def test_non_finite_float_rejected(
        self, open_queue: OpenQueue, value: float
    ) -> None:
        pulse = await open_queue()

        with pytest.raises(
            InvalidPayload, match=r"cannot be stored as JSON: .*NaN or infinite float"
        ):
            await pulse.enqueue("job", {"ratio": value})

        assert count_jobs(pulse) == 0

    async def test_circular_payload_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        loop: list[Any] = []
        loop.append(loop)

        with pytest.raises(InvalidPayload, match=r"Circular reference detected"):
            await pulse.enqueue("job", loop)

        assert count_jobs(pulse) == 0

    async def test_invalid_payload_is_type_error(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(TypeError):
            await pulse.enqueue("job", {1, 2})

    async def test_bad_payload_in_batch_stores_none(
        self, open_queue: OpenQueue
    ) -> None:
        pulse = await open_queue()

        with pytest.raises(InvalidPayload, match=r"Object of type set"):
            await pulse.enqueue_many("job", [1, 2, {3}, 4])

        assert count_jobs(pulse) == 0

    async def test_payload_over_limit_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(max_payload_bytes=100)

        with pytest.raises(
            InvalidPayload,
            match=r"payload of job 'job' is 102 bytes encoded, over the limit of 100",
        ):
            await pulse.enqueue("job", "x" * 100)

        assert count_jobs(pulse) == 0

    async def test_payload_at_limit_accepted(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(max_payload_bytes=100)
        # 98 characters plus two quotes is 100 bytes.
        job_id = await pulse.enqueue("job", "x" * 98)

        assert (await pulse.status(job_id)).payload == "x" * 98

    async def test_limit_counts_utf8_bytes(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue(max_payload_bytes=100)

        # 40 characters of 3 bytes each are 122 bytes with the quotes.
        with pytest.raises(InvalidPayload, match=r"is 122 bytes encoded"):
            await pulse.enqueue("job", "東" * 40)

    async def test_config_must_be_job_config(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(TypeError, match=r"config must be a JobConfig, not dict"):
            await pulse.enqueue_with_config("job", None, {"max_retries": 1})  # type: ignore[arg-type]

        assert count_jobs(pulse) == 0


class TestNameChecks:
    @pytest.mark.parametrize(
        ("name", "message"),
        [
            ("", r"job name must not be empty or blank, got ''"),
            ("   ", r"job name must not be empty or blank, got '   '"),
            (None, r"job name must be a str, not NoneType \(None\)"),
            (42, r"job name must be a str, not int \(42\)"),
            (b"job", r"job name must be a str, not bytes \(b'job'\)"),
        ],
    )
    async def test_invalid_name_rejected(
        self, open_queue: OpenQueue, name: Any, message: str
    ) -> None:
        pulse = await open_queue()

        with pytest.raises(InvalidJobName, match=message):
            await pulse.enqueue(name)
        with pytest.raises(InvalidJobName, match=message):
            await pulse.enqueue_many(name, [1])
        with pytest.raises(InvalidJobName, match=message):
            await pulse.schedule(name, None, delay=1)
        with pytest.raises(InvalidJobName, match=message):
            pulse.handle(name, do_nothing)

        assert count_jobs(pulse) == 0

    async def test_invalid_name_is_value_error(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(ValueError):
            await pulse.enqueue("")


class TestHandlerRegistration:
    async def test_handle_returns_handler(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        assert pulse.handle("job", do_nothing) is do_nothing
        assert pulse.handled_names() == frozenset({"job"})

    @pytest.mark.parametrize("handler", [None, 42, "do_nothing"])
    async def test_non_callable_rejected(
        self, open_queue: OpenQueue, handler: Any
    ) -> None:
        pulse = await open_queue()

        type_name = type(handler).__name__
        with pytest.raises(
            HandlerError,
            match=rf"handler for job 'job' must be callable, not {type_name}",
        ):
            pulse.handle("job", handler)

        assert pulse.handled_names() == frozenset()

    async def test_duplicate_name_rejected(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()
        pulse.handle("job", do_nothing)

        async def other(_: Any) -> None:
            pass

        with pytest.raises(
            HandlerError, match=r"a handler for job 'job' is already registered"
        ):
            pulse.handle("job", other)

    async def test_handler_error_is_pulse_error(self, open_queue: OpenQueue) -> None:
        pulse = await open_queue()

        with pytest.raises(PulseError):
            pulse.handle("job", None)  # type: ignore[arg-type]
