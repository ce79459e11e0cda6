"""Log records: job ids and names, unhandled names, no library handlers."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio

from pulse_trio import JobConfig, JobStatus, Pulse, current_job

from .helpers import wait_finished, wait_for_status

OpenQueue = Callable[..., Awaitable[Pulse]]


def job_records(
    caplog: pytest.LogCaptureFixture, job_id: str
) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if getattr(record, "job_id", None) == job_id or job_id in record.getMessage()
    ]


async def test_job_records_name_id_and_name(
    open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="pulse_trio")
    pulse = await open_queue()

    async def fail_first(_: Any) -> None:
        if current_job().attempt == 1:
            raise ValueError("first run fails")

    async def always_fail(_: Any) -> None:
        raise ValueError("always fails")

    async def hang(_: Any) -> None:
        await trio.sleep_forever()

    pulse.handle("flaky", fail_first)
    pulse.handle("broken", always_fail)
    pulse.handle("hang", hang)
    flaky = await pulse.enqueue_with_config("flaky", None, JobConfig(retry_delay=0))
    broken = await pulse.enqueue_with_config("broken", None, JobConfig.no_retry())
    slow = await pulse.enqueue_with_config("hang", None, JobConfig.no_retry(timeout=5))
    async with pulse:
        await wait_finished(pulse, [flaky, broken, slow])
        await pulse.retry(broken)
        await wait_finished(pulse, [broken])

    for job_id, name in [(flaky, "flaky"), (broken, "broken"), (slow, "hang")]:
        records = job_records(caplog, job_id)
        assert records, f"no record names job {name}"
        for record in records:
            message = record.getMessage()
            assert getattr(record, "job_id", None) == job_id, message
            assert getattr(record, "job_name", None) == name, message
            assert job_id in message
            assert f"({name})" in message

    # A record that names a job by its name also carries its id.
    ids_by_name = {"flaky": flaky, "broken": broken, "hang": slow}
    for record in caplog.records:
        message = record.getMessage()
        for name, job_id in ids_by_name.items():
            if f"({name})" in message:
                assert job_id in message, message
                assert getattr(record, "job_id", None) == job_id, message

    flaky_messages = [r.getMessage() for r in job_records(caplog, flaky)]
    assert any("attempt 1 failed; retry at" in m for m in flaky_messages)
    assert any("completed" in m for m in flaky_messages)
    broken_records = job_records(caplog, broken)
    assert any(
        r.levelno == logging.ERROR and "job is dead" in r.getMessage()
        for r in broken_records
    )
    assert any("dead job retried" in r.getMessage() for r in broken_records)
    slow_messages = [r.getMessage() for r in job_records(caplog, slow)]
    assert any("timed out after 5 s" in m for m in slow_messages)


async def test_failure_record_has_traceback(
    open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
) -> None:
    pulse = await open_queue()

    async def always_fail(_: Any) -> None:
        raise ValueError("always fails")

    pulse.handle("broken", always_fail)
    job_id = await pulse.enqueue_with_config("broken", None, JobConfig.no_retry())
    async with pulse:
        await wait_finished(pulse, [job_id])

    [dead] = [r for r in job_records(caplog, job_id) if "job is dead" in r.getMessage()]
    assert dead.levelno == logging.ERROR
    assert dead.exc_info is not None
    assert isinstance(dead.exc_info[1], ValueError)


async def test_cancelled_run_logged(
    open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pulse_trio")
    pulse = await open_queue()

    async def hang(_: Any) -> None:
        await trio.sleep_forever()

    pulse.handle("hang", hang)
    job_id = await pulse.enqueue("hang")
    async with trio.open_nursery() as nursery:
        await nursery.start(pulse.run)
        await wait_for_status(pulse, job_id, [JobStatus.RUNNING])
        await pulse.shutdown_now()

    messages = [r.getMessage() for r in job_records(caplog, job_id)]
    assert any("cancelled by shutdown" in m for m in messages)


async def test_unhandled_job_stays_pending_with_warning(
    open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
) -> None:
    pulse = await open_queue()
    runs: list[str] = []

    async def record(label: str) -> None:
        runs.append(label)

    pulse.handle("known", record)
    orphan = await pulse.enqueue("unknown_name", "orphan")
    known = await pulse.enqueue("known", "known")

    async with pulse:
        await wait_finished(pulse, [known])
        await trio.sleep(600)
        waiting = await pulse.status(orphan)
        # Registering the handler later lets the job run.
        pulse.handle("unknown_name", record)
        [job] = await wait_finished(pulse, [orphan])

    warnings = [
        r
        for r in caplog.records
        if r.levelno == logging.WARNING and "'unknown_name'" in r.getMessage()
    ]
    assert warnings, "no warning names the job name without a handler"
    assert all(getattr(r, "job_name", None) == "unknown_name" for r in warnings)
    assert "no handler" in warnings[0].getMessage()
    assert waiting.status is JobStatus.PENDING
    assert waiting.attempts == 0
    assert runs == ["known", "orphan"]
    assert job.status is JobStatus.COMPLETED


async def test_unhandled_warning_bounded_for_many_names(
    open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
) -> None:
    pulse = await open_queue()
    pulse.handle("known", lambda payload: None)
    for index in range(40):
        await pulse.enqueue_many(f"unknown_{index:02}", range(3))
    await pulse.enqueue_many("unknown_big", range(1200))

    with caplog.at_level(logging.WARNING, logger="pulse_trio"):
        async with pulse:
            await trio.sleep(1)

    messages = [r.getMessage() for r in caplog.records]
    named = [m for m in messages if m.startswith("due jobs named")]
    assert len(named) == 10
    assert "'unknown_00'" in named[0]
    assert "(count: 3)" in named[0]
    assert sum("more names" in m for m in messages) == 1


async def test_library_adds_no_handlers(open_queue: OpenQueue) -> None:
    pulse = await open_queue()

    async def always_fail(_: Any) -> None:
        raise ValueError("always fails")

    pulse.handle("broken", always_fail)
    job_id = await pulse.enqueue_with_config("broken", None, JobConfig.no_retry())
    async with pulse:
        await wait_finished(pulse, [job_id])

    names = [
        name
        for name, value in logging.root.manager.loggerDict.items()
        if name.split(".")[0] == "pulse_trio" and isinstance(value, logging.Logger)
    ]
    assert "pulse_trio._pulse" in names
    for name in ["pulse_trio", *names]:
        logger = logging.getLogger(name)
        assert logger.handlers == [], name
        assert logger.propagate, name


async def test_no_handlers_at_start_is_info(
    open_queue: OpenQueue, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="pulse_trio")
    pulse = await open_queue()
    ran: list[Any] = []

    async def record(payload: Any) -> None:
        ran.append(payload)

    async with pulse:
        job_id = await pulse.enqueue("late", 1)
        pulse.handle("late", record)
        await wait_finished(pulse, [job_id])

    starts = [r for r in caplog.records if "no handlers registered" in r.getMessage()]
    assert len(starts) == 1
    assert starts[0].levelno == logging.INFO
    assert "Pulse.handle()" in starts[0].getMessage()
    assert ran == [1]
