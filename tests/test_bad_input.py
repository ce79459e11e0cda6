"""Bad input: every rejection names the value and the fix, and loses nothing.

Each bad call is made against a running queue that already stores jobs, so
the tests check both the error and that the stored jobs are untouched and
the queue keeps working afterwards.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Awaitable, Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import (
    HandlerError,
    InvalidJobName,
    InvalidPayload,
    JobConfig,
    JobStatus,
    Pulse,
)
from pulse_trio._worker import MAX_ERROR_CHARS, MAX_TRACEBACK_CHARS

from .helpers import read_rows, wait_finished

OpenQueue = Callable[..., Awaitable[Pulse]]

StoredRows = list[dict[str, Any]]


def stored_rows(pulse: Pulse) -> StoredRows:
    return [dict(row) for row in read_rows(pulse, "SELECT * FROM pulse_jobs")]


async def record(payload: object) -> None:
    pass


async def enqueue_bad(pulse: Pulse, call: str, argument: Any) -> None:
    """Make one bad call of the public API."""
    match call:
        case "payload":
            await pulse.enqueue("record", argument)
        case "payload_in_batch":
            await pulse.enqueue_many("record", [1, argument, 3])
        case "name":
            await pulse.enqueue(argument, None)
        case "config":
            await pulse.enqueue_with_config("record", None, JobConfig(**argument))
        case "delay":
            await pulse.schedule("record", None, delay=argument)
        case "run_at":
            await pulse.schedule("record", None, run_at=argument)
        case _:
            raise AssertionError(f"unknown call {call!r}")


BAD_CALLS = [
    pytest.param(
        "payload",
        {"when": object()},
        InvalidPayload,
        r"payload of job 'record' cannot be stored as JSON: Object of type "
        r"object is not JSON serializable\. Pass dicts with str keys",
        id="payload-not-json",
    ),
    pytest.param(
        "payload",
        {1: {2, 3}},
        InvalidPayload,
        r"Object of type set is not JSON serializable.*convert other values",
        id="payload-set",
    ),
    pytest.param(
        "payload",
        [1.0, math.nan],
        InvalidPayload,
        r"cannot be stored as JSON: .*NaN or infinite float",
        id="payload-nan",
    ),
    pytest.param(
        "payload",
        {"ratio": -math.inf},
        InvalidPayload,
        r"NaN or infinite float",
        id="payload-infinity",
    ),
    pytest.param(
        "payload",
        "x" * 2000,
        InvalidPayload,
        r"payload of job 'record' is 2002 bytes encoded, over the limit of 1000; "
        r"store large data elsewhere and pass a reference, or raise "
        r"max_payload_bytes",
        id="payload-over-limit",
    ),
    pytest.param(
        "payload_in_batch",
        {"bad": b"bytes"},
        InvalidPayload,
        r"Object of type bytes is not JSON serializable",
        id="batch-with-bad-payload",
    ),
    pytest.param(
        "name",
        "",
        InvalidJobName,
        r"job name must not be empty or blank, got ''",
        id="name-empty",
    ),
    pytest.param(
        "name",
        "n" * 201,
        InvalidJobName,
        r"job name is 201 characters long, over the limit of 200: 'nnnn",
        id="name-too-long",
    ),
    pytest.param(
        "name",
        "bad\udc80name",
        InvalidJobName,
        r"job name 'bad\\udc80name' is not valid Unicode .*remove lone surrogates",
        id="name-lone-surrogate",
    ),
    pytest.param(
        "payload",
        functools.reduce(lambda inner, _: [inner], range(101), 0),
        InvalidPayload,
        r"payload of job 'record' nests lists and dicts more than 100 levels "
        r"deep; flatten it",
        id="payload-too-deep",
    ),
    pytest.param(
        "delay",
        10**400,
        ValueError,
        r"delay is too long: an int of 1329 bits; the maximum is 366000 days",
        id="delay-huge-int",
    ),
    pytest.param(
        "config",
        {"timeout": 10**400},
        ValueError,
        r"timeout is too long: an int of 1329 bits",
        id="timeout-huge-int",
    ),
    pytest.param(
        "name",
        ["record"],
        InvalidJobName,
        r"job name must be a str, not list \(\['record'\]\)",
        id="name-list",
    ),
    pytest.param(
        "config",
        {"max_retries": -1},
        ValueError,
        r"max_retries must be 0 or more, got -1",
        id="retries-negative",
    ),
    pytest.param(
        "config",
        {"max_retries": "3"},
        TypeError,
        r"max_retries must be an int, not str \('3'\)",
        id="retries-str",
    ),
    pytest.param(
        "config",
        {"max_retries": 2.5},
        TypeError,
        r"max_retries must be an int, not float \(2\.5\)",
        id="retries-float",
    ),
    pytest.param(
        "config",
        {"retry_delay": -0.5},
        ValueError,
        r"retry_delay must not be negative, got -0\.5",
        id="retry-delay-negative",
    ),
    pytest.param(
        "config",
        {"retry_delay": "5s"},
        TypeError,
        r"retry_delay must be a timedelta or a number of seconds, not str \('5s'\)",
        id="retry-delay-str",
    ),
    pytest.param(
        "config",
        {"max_retry_delay": timedelta(seconds=-1)},
        ValueError,
        r"max_retry_delay must not be negative",
        id="max-retry-delay-negative",
    ),
    pytest.param(
        "config",
        {"timeout": -1},
        ValueError,
        r"timeout must not be negative, got -1",
        id="timeout-negative",
    ),
    pytest.param(
        "config",
        {"timeout": 0},
        ValueError,
        r"timeout must be at least 1 microsecond, got 0; pass None for no time limit",
        id="timeout-zero",
    ),
    pytest.param(
        "config",
        {"timeout": math.nan},
        ValueError,
        r"timeout must be a finite duration, not nan",
        id="timeout-nan",
    ),
    pytest.param(
        "config",
        {"timeout": [30]},
        TypeError,
        r"timeout must be a timedelta or a number of seconds, not list",
        id="timeout-list",
    ),
    pytest.param(
        "config",
        {"priority": 7},
        ValueError,
        r"invalid priority 7; use one of JobPriority\.LOW \(0\)",
        id="priority-unknown-int",
    ),
    pytest.param(
        "config",
        {"priority": "urgent"},
        ValueError,
        r"invalid priority 'urgent'; use one of",
        id="priority-unknown-name",
    ),
    pytest.param(
        "config",
        {"priority": None},
        ValueError,
        r"invalid priority None",
        id="priority-none",
    ),
    pytest.param(
        "delay",
        -3,
        ValueError,
        r"delay must not be negative, got -3",
        id="delay-negative",
    ),
    pytest.param(
        "delay",
        "1h",
        TypeError,
        r"delay must be a timedelta or a number of seconds, not str \('1h'\)",
        id="delay-str",
    ),
    pytest.param(
        "delay",
        math.inf,
        ValueError,
        r"delay must be a finite duration, not inf",
        id="delay-infinite",
    ),
    pytest.param(
        "run_at",
        "2030-01-01",
        TypeError,
        r"run_at must be an aware datetime, not str",
        id="run-at-str",
    ),
]


@pytest.mark.parametrize(("call", "argument", "error", "message"), BAD_CALLS)
async def test_bad_call_rejected_and_nothing_lost(
    open_queue: OpenQueue,
    call: str,
    argument: Any,
    error: type[Exception],
    message: str,
) -> None:
    pulse = await open_queue(max_payload_bytes=1000, workers=2)
    runs: list[object] = []

    async def record_run(payload: object) -> None:
        runs.append(payload)

    pulse.handle("record", record_run)
    await pulse.schedule("record", "later", delay=3600)
    async with pulse:
        done = await pulse.enqueue_many("record", ["a", "b"])
        await wait_finished(pulse, done)
        before = stored_rows(pulse)

        with pytest.raises(error, match=message):
            await enqueue_bad(pulse, call, argument)

        assert stored_rows(pulse) == before
        # The queue keeps working after the rejection.
        after = await pulse.enqueue("record", "c")
        [job] = await wait_finished(pulse, [after])
    assert job.status is JobStatus.COMPLETED
    assert sorted(runs) == ["a", "b", "c"]


async def test_deeply_nested_payload_rejected(open_queue: OpenQueue) -> None:
    pulse = await open_queue()
    nested: list[Any] = []
    for _ in range(100_000):
        nested = [nested]

    with pytest.raises(InvalidPayload, match=r"cannot be stored as JSON"):
        await pulse.enqueue("record", nested)

    assert stored_rows(pulse) == []


async def test_payload_at_depth_limit_accepted(open_queue: OpenQueue) -> None:
    pulse = await open_queue()
    deepest = functools.reduce(lambda inner, _: [inner], range(100), 0)
    brackets_in_text = {"note": "[" * 500}

    first = await pulse.enqueue("record", deepest)
    second = await pulse.enqueue("record", brackets_in_text)

    assert (await pulse.status(first)).payload == deepest
    assert (await pulse.status(second)).payload == brackets_in_text


def test_payload_limit_documented() -> None:
    doc = Pulse.new.__doc__ or ""
    assert "max_payload_bytes: Largest payload that enqueue accepts" in doc
    assert "1 MiB by default" in doc


# -- options of Pulse.new ---------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"max_payload_bytes": 0},
            ValueError,
            r"max_payload_bytes must be a "
            r"positive int, got 0",
        ),
        ({"max_payload_bytes": "1MB"}, ValueError, r"got '1MB'"),
        ({"workers": 0}, ValueError, r"workers must be a positive int, got 0"),
        ({"workers": 2.0}, ValueError, r"workers must be a positive int, got 2\.0"),
        ({"lease": 0}, ValueError, r"lease must be positive"),
        ({"lease": -5}, ValueError, r"lease must not be negative, got -5"),
        ({"lease": "20s"}, TypeError, r"lease must be a timedelta or a number"),
        (
            {"synchronous": "OFF"},
            ValueError,
            r"invalid synchronous mode 'OFF'; use "
            r"'NORMAL' or 'FULL'",
        ),
        ({"keep_completed": -1}, ValueError, r"keep_completed must not be negative"),
        (
            {"max_payload_bytes": 2**30},
            ValueError,
            r"max_payload_bytes must be at most 536870912 \(512 MiB\), got 1073741824",
        ),
        ({"lease": 10**400}, ValueError, r"lease is too long: an int of 1329 bits"),
    ],
)
async def test_bad_option_rejected_and_file_kept(
    tmp_path: Path, options: dict[str, Any], error: type[Exception], message: str
) -> None:
    db = tmp_path / "queue.db"
    first = await Pulse.new(db)
    job_id = await first.enqueue("record", "kept")
    first.close()

    with pytest.raises(error, match=message):
        await Pulse.new(db, **options)

    again = await Pulse.new(db)
    assert (await again.status(job_id)).payload == "kept"
    again.close()


@pytest.mark.parametrize(
    "options",
    [{"workers": 0}, {"lease": 0}, {"synchronous": "OFF"}, {"max_payload_bytes": 0}],
)
async def test_bad_option_creates_no_file(
    tmp_path: Path, options: dict[str, Any]
) -> None:
    db = tmp_path / "new.db"

    with pytest.raises(ValueError, match=r"must be|invalid synchronous"):
        await Pulse.new(db, **options)

    assert list(tmp_path.iterdir()) == []


# -- handlers ---------------------------------------------------------------


async def test_bad_handlers_rejected(open_queue: OpenQueue) -> None:
    pulse = await open_queue()
    pulse.handle("record", record)

    with pytest.raises(
        HandlerError, match=r"handler for job 'other' must be callable, not int \(3\)"
    ):
        pulse.handle("other", 3)  # type: ignore[arg-type]
    with pytest.raises(
        HandlerError,
        match=r"a handler for job 'record' is already registered .*; register each "
        r"name once",
    ):
        pulse.handle("record", record)
    with pytest.raises(InvalidJobName, match=r"job name must be a str, not int"):
        pulse.handle(5, record)  # type: ignore[arg-type]

    assert pulse.handled_names() == frozenset({"record"})


def generator_handler(payload: object) -> Iterator[int]:
    yield 1


async def async_generator_handler(payload: object) -> Any:
    yield 1


async def no_arguments() -> None:
    pass


async def two_arguments(payload: object, extra: object) -> None:
    pass


async def keyword_only(*, payload: object) -> None:
    pass


async def with_default(payload: object, extra: object = None) -> None:
    pass


@pytest.mark.parametrize(
    ("function", "message"),
    [
        (generator_handler, r"handler for job 'bad' is a generator function"),
        (async_generator_handler, r"handler for job 'bad' is a generator function"),
        (
            no_arguments,
            r"handler for job 'bad' must accept the payload as one positional "
            r"argument, but .*no_arguments.* has the signature \(\)",
        ),
        (two_arguments, r"has the signature \(payload: 'object', extra: 'object'\)"),
        (keyword_only, r"must accept the payload as one positional argument"),
    ],
)
async def test_handler_of_wrong_shape_rejected(
    open_queue: OpenQueue, function: Any, message: str
) -> None:
    pulse = await open_queue()

    with pytest.raises(HandlerError, match=message):
        pulse.handle("bad", function)

    assert pulse.handled_names() == frozenset()


async def test_handler_shapes_accepted(open_queue: OpenQueue) -> None:
    pulse = await open_queue()

    pulse.handle("default", with_default)
    pulse.handle("lambda", lambda payload: None)
    pulse.handle("builtin", print)

    assert pulse.handled_names() == frozenset({"default", "lambda", "builtin"})


class OwnBaseException(BaseException):
    """A BaseException that is neither a cancellation nor an exit request."""


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("str() is broken")


async def test_own_base_exception_fails_attempt(open_queue: OpenQueue) -> None:
    pulse = await open_queue(workers=2)
    others: list[int] = []

    async def raise_own(payload: object) -> None:
        raise OwnBaseException("not a control exception")

    async def count(payload: int) -> None:
        others.append(payload)

    pulse.handle("own", raise_own)
    pulse.handle("count", count)
    async with pulse:
        bad = await pulse.enqueue_with_config("own", None, JobConfig(max_retries=1))
        good = await pulse.enqueue_many("count", [1, 2, 3])
        [dead, *completed] = await wait_finished(pulse, [bad, *good])

    assert dead.status is JobStatus.DEAD
    assert dead.attempts == 2
    assert [error.error for error in dead.errors] == [
        "OwnBaseException: not a control exception"
    ] * 2
    assert [job.status for job in completed] == [JobStatus.COMPLETED] * 3
    assert sorted(others) == [1, 2, 3]


@pytest.mark.parametrize("control", [KeyboardInterrupt, SystemExit])
async def test_control_exception_stops_queue_keeps_job(
    open_queue: OpenQueue, control: type[BaseException]
) -> None:
    pulse = await open_queue()

    async def interrupt(payload: object) -> None:
        raise control()

    pulse.handle("interrupt", interrupt)
    job_id = await pulse.enqueue("interrupt", None)

    with pytest.raises(control):
        await pulse.run()

    job = await pulse.status(job_id)
    # The interrupted run is put back without using up an attempt.
    assert job.status is JobStatus.PENDING
    assert job.attempts == 0


async def test_unprintable_exception_recorded(open_queue: OpenQueue) -> None:
    pulse = await open_queue()

    async def fail(payload: object) -> None:
        raise UnprintableError()

    pulse.handle("fail", fail)
    async with pulse:
        job_id = await pulse.enqueue_with_config("fail", None, JobConfig.no_retry())
        [job] = await wait_finished(pulse, [job_id])

    assert job.status is JobStatus.DEAD
    assert job.last_error == (
        "UnprintableError: <str() of the exception raised RuntimeError>"
    )
    assert job.errors[0].error == job.last_error


async def test_huge_error_message_stored_truncated(open_queue: OpenQueue) -> None:
    pulse = await open_queue()
    message = "m" * 5_000_000

    async def fail(payload: object) -> None:
        raise ValueError(message)

    pulse.handle("fail", fail)
    async with pulse:
        job_id = await pulse.enqueue_with_config("fail", None, JobConfig.no_retry())
        [job] = await wait_finished(pulse, [job_id])

    assert job.status is JobStatus.DEAD
    assert job.last_error is not None
    assert job.last_error.startswith("ValueError: mmmm")
    cut = len("ValueError: ") + len(message) - MAX_ERROR_CHARS
    assert job.last_error.endswith(f"... [{cut} more characters cut]")
    assert len(job.last_error) < MAX_ERROR_CHARS + 100
    traceback = job.errors[0].traceback
    assert len(traceback) < MAX_TRACEBACK_CHARS + 100
    assert "characters cut" in traceback
    # The end of the traceback, with the exception line, is kept.
    assert traceback.rstrip().endswith("m" * 100)


async def test_error_of_many_lines_kept_whole(open_queue: OpenQueue) -> None:
    pulse = await open_queue()
    message = "line\n" * 100 + "\x00 and 東"

    async def fail(payload: object) -> None:
        raise RuntimeError(message)

    pulse.handle("fail", fail)
    async with pulse:
        job_id = await pulse.enqueue_with_config("fail", None, JobConfig.no_retry())
        [job] = await wait_finished(pulse, [job_id])

    assert job.last_error == f"RuntimeError: {message}"


async def test_bad_enqueue_in_handler_fails_run(open_queue: OpenQueue) -> None:
    # A rejected enqueue from inside a handler fails only that run.
    pulse = await open_queue()

    async def enqueue_bad_child(payload: object) -> None:
        await trio.sleep(1)
        await pulse.enqueue("record", {"bad": {1}})

    pulse.handle("parent", enqueue_bad_child)
    pulse.handle("record", record)
    async with pulse:
        job_id = await pulse.enqueue_with_config("parent", None, JobConfig.no_retry())
        [job] = await wait_finished(pulse, [job_id])

    assert job.status is JobStatus.DEAD
    assert job.last_error is not None
    assert job.last_error.startswith("InvalidPayload: payload of job 'record'")
