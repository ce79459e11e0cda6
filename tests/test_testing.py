"""The testing helpers: fixtures, drain and wait under the mock clock, and
inline mode.

The examples of the testing and events pages run here too, each page in a
pytest session of its own.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import (
    EventKind,
    HandlerError,
    JobConfig,
    JobPriority,
    JobStatus,
    Pulse,
    PulseError,
    current_job,
)
from pulse_trio.testing import DEFAULT_TEST_WORKERS, recorded_events, run_job

pytest_plugins = ["pytester", "pulse_trio.testing"]

DOCS = Path(__file__).resolve().parent.parent / "docs"


async def noop(_: Any) -> None:
    pass


async def hang(_: Any) -> None:
    await trio.sleep_forever()


# -- the pulse fixture ----------------------------------------------------------


class TestPulseFixture:
    async def test_queue_is_running(self, pulse: Pulse) -> None:
        pulse.handle("noop", noop)

        job = await run_job(pulse, "noop", 1)

        assert job.status is JobStatus.COMPLETED
        assert pulse.database == ":memory:"
        assert pulse.workers == DEFAULT_TEST_WORKERS

    async def test_start_without_handlers_warns_nothing(
        self, pulse: Pulse, caplog: pytest.LogCaptureFixture
    ) -> None:
        pulse.handle("noop", noop)

        await run_job(pulse, "noop", 1)

        phases = ("setup", "call")
        records = [r for phase in phases for r in caplog.get_records(phase)]
        assert [r for r in records if r.levelno >= logging.WARNING] == []

    async def test_handler_added_after_enqueue_runs_at_once(self, pulse: Pulse) -> None:
        job_id = await pulse.enqueue("late", None)
        start = trio.current_time()

        pulse.handle("late", noop)
        job = await pulse.wait(job_id)

        assert job.status is JobStatus.COMPLETED
        assert trio.current_time() - start < 1

    async def test_running_job_is_left_to_teardown(self, pulse: Pulse) -> None:
        pulse.handle("hang", hang)
        job_id = await pulse.enqueue("hang")

        with trio.fail_after(10):
            while (await pulse.status(job_id)).status is not JobStatus.RUNNING:
                await trio.sleep(0.01)

    async def test_virtual_hours_cost_few_commits(self, pulse: Pulse) -> None:
        # An in-memory queue has no lease to renew, so hours of virtual time
        # cost a few commits, not thousands.
        pulse.handle("noop", noop)
        done = await run_job(pulse, "noop")
        later = await pulse.schedule("noop", None, delay=timedelta(hours=20))
        commits_before = pulse._persistence._committed

        await pulse.drain(include_scheduled=True)

        assert (await pulse.status(later)).status is JobStatus.COMPLETED
        assert pulse._persistence._committed - commits_before < 50
        # Completed jobs are kept: in-memory queues keep them by default.
        assert (await pulse.status(done.id)).status is JobStatus.COMPLETED


class TestHandlersFixture:
    @pytest.fixture
    def pulse_handlers(self) -> Mapping[str, Any]:
        return {"noop": noop, "hang": hang}

    @pytest.fixture
    def pulse_workers(self) -> int:
        return 1

    async def test_handlers_registered_before_start(self, pulse: Pulse) -> None:
        assert pulse.handled_names() == {"noop", "hang"}
        assert pulse.workers == 1

    async def test_inline_queue_registers_them_too(self, inline_pulse: Pulse) -> None:
        job_id = await inline_pulse.enqueue("noop")

        assert (await inline_pulse.status(job_id)).status is JobStatus.COMPLETED


# -- drain and wait under the mock clock ---------------------------------------


class TestWaitAndDrainMisuse:
    async def test_drain_from_handler_raises(self, pulse: Pulse) -> None:
        errors: list[str] = []

        async def drains(_: Any) -> None:
            try:
                await pulse.drain()
            except PulseError as exc:
                errors.append(str(exc))

        pulse.handle("drains", drains)
        job = await run_job(pulse, "drains")

        assert job.status is JobStatus.COMPLETED
        assert len(errors) == 1
        assert f"drain() was called from the handler of job {job.id}" in errors[0]

    async def test_wait_for_own_job_raises(self, pulse: Pulse) -> None:
        errors: list[str] = []

        async def waits(_: Any) -> None:
            try:
                await pulse.wait(current_job().id)
            except PulseError as exc:
                errors.append(str(exc))

        pulse.handle("waits", waits)
        job = await run_job(pulse, "waits")

        assert job.status is JobStatus.COMPLETED
        assert errors == [
            f"wait() was called for job {job.id} (waits) from its own handler; "
            "it would wait for itself forever"
        ]

    async def test_wait_on_stopped_memory_queue_raises(self) -> None:
        queue = Pulse.in_memory(workers=1)
        job_id = await queue.enqueue("unhandled")
        async with queue:
            pass

        with pytest.raises(PulseError, match=r"is pending: the in-memory queue has"):
            await queue.wait(job_id)
        queue.close()

    async def test_wait_on_inline_pending_job_raises(self, inline_pulse: Pulse) -> None:
        job_id = await inline_pulse.enqueue("unhandled")

        with pytest.raises(PulseError, match=r"register its handler and call drain"):
            await inline_pulse.wait(job_id)

    async def test_drain_on_stopped_queue_names_state(self) -> None:
        queue = Pulse.in_memory(workers=1)
        async with queue:
            pass

        with pytest.raises(PulseError, match=r"this one is stopped"):
            await queue.drain()
        queue.close()


class TestDrain:
    async def test_scheduled_hour_ahead_runs_at_once(self, pulse: Pulse) -> None:
        ran_at: list[float] = []

        async def record(_: Any) -> None:
            ran_at.append(trio.current_time())

        pulse.handle("record", record)
        start_virtual = trio.current_time()
        start_real = time.perf_counter()

        job_id = await pulse.schedule("record", None, delay=timedelta(hours=1))
        await pulse.drain(include_scheduled=True)

        job = await pulse.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert ran_at[0] - start_virtual == pytest.approx(3600, abs=0.01)
        assert time.perf_counter() - start_real < 5

    async def test_without_scheduled_leaves_future_jobs(self, pulse: Pulse) -> None:
        pulse.handle("noop", noop)
        now_id = await pulse.enqueue("noop")
        later_id = await pulse.schedule("noop", None, delay=timedelta(hours=1))
        start = trio.current_time()

        await pulse.drain()

        assert (await pulse.status(now_id)).status is JobStatus.COMPLETED
        assert (await pulse.status(later_id)).status is JobStatus.SCHEDULED
        assert trio.current_time() - start < 1

    async def test_waits_for_retry_backoff(self, pulse: Pulse) -> None:
        runs: list[float] = []

        async def fail_twice(_: Any) -> None:
            runs.append(trio.current_time())
            if len(runs) < 3:
                raise ValueError("not yet")

        pulse.handle("flaky", fail_twice)
        job_id = await pulse.enqueue_with_config(
            "flaky", None, JobConfig(retry_delay=timedelta(minutes=10))
        )

        await pulse.drain(include_scheduled=True)

        job = await pulse.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 3
        assert runs[1] - runs[0] == pytest.approx(600, abs=0.01)
        assert runs[2] - runs[1] == pytest.approx(1200, abs=0.01)

    async def test_wait_returns_dead_job(self, pulse: Pulse) -> None:
        async def fail(_: Any) -> None:
            raise RuntimeError("broken")

        pulse.handle("fail", fail)

        job = await run_job(pulse, "fail", None, JobConfig(max_retries=1))

        assert job.status is JobStatus.DEAD
        assert job.attempts == 2
        assert job.last_error == "RuntimeError: broken"


class TestRecordedEvents:
    async def test_collects_inside_block_only(self, pulse: Pulse) -> None:
        pulse.handle("noop", noop)

        with recorded_events(pulse) as events:
            first = await run_job(pulse, "noop")
        await run_job(pulse, "noop")

        assert [event.kind for event in events] == [
            EventKind.STARTED,
            EventKind.COMPLETED,
        ]
        assert {event.job_id for event in events} == {first.id}


# -- inline mode ----------------------------------------------------------------


@pytest.fixture
def inline() -> Pulse:
    return Pulse.in_memory(inline=True)


class TestInline:
    async def test_handler_runs_in_calling_task(self, inline: Pulse) -> None:
        seen: list[Any] = []

        async def record(payload: Any) -> None:
            seen.append((trio.lowlevel.current_task(), payload, current_job().attempt))

        inline.handle("record", record)

        job_id = await inline.enqueue("record", {"n": 1})

        assert seen == [(trio.lowlevel.current_task(), {"n": 1}, 1)]
        job = await inline.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 1
        assert job.finished_at is not None

    async def test_plain_function_runs_in_a_thread(self, inline: Pulse) -> None:
        threads: list[threading.Thread] = []

        def record(_: Any) -> None:
            threads.append(threading.current_thread())
            assert current_job().name == "record"

        inline.handle("record", record)

        job_id = await inline.enqueue("record")

        assert threads
        assert threads[0] is not threading.main_thread()
        assert (await inline.status(job_id)).status is JobStatus.COMPLETED

    async def test_failures_retry_at_once_until_dead(self, inline: Pulse) -> None:
        async def fail(_: Any) -> None:
            raise ValueError("card declined")

        inline.handle("charge", fail)
        start = trio.current_time()

        job_id = await inline.enqueue_with_config(
            "charge", None, JobConfig(max_retries=2, retry_delay=3600)
        )

        job = await inline.status(job_id)
        assert job.status is JobStatus.DEAD
        assert job.attempts == 3
        assert [error.attempt for error in job.errors] == [1, 2, 3]
        assert {error.error for error in job.errors} == {"ValueError: card declined"}
        assert "Traceback (most recent call last)" in job.errors[0].traceback
        assert job.config.retry_delay == timedelta(hours=1)
        assert trio.current_time() == start

    async def test_flaky_job_completes(self, inline: Pulse) -> None:
        calls: list[int] = []

        async def flaky(_: Any) -> None:
            calls.append(current_job().attempt)
            if len(calls) < 3:
                raise ConnectionError("try again")

        inline.handle("flaky", flaky)

        job = await inline.status(await inline.enqueue("flaky"))

        assert calls == [1, 2, 3]
        assert job.status is JobStatus.COMPLETED
        assert job.attempts == 3
        assert len(job.errors) == 2

    async def test_events_match_a_running_queue(self, inline: Pulse) -> None:
        calls: list[int] = []

        async def flaky(_: Any) -> None:
            calls.append(1)
            if len(calls) < 2:
                raise ConnectionError("try again")

        inline.handle("flaky", flaky)

        with recorded_events(inline) as events:
            await inline.enqueue("flaky")

        assert [event.kind for event in events] == [
            EventKind.STARTED,
            EventKind.FAILED,
            EventKind.STARTED,
            EventKind.COMPLETED,
        ]
        assert events[1].error == "ConnectionError: try again"
        assert events[1].next_run_at == events[1].at
        assert inline.statistics().completed_since_start == 1
        assert inline.statistics().failed_since_start == 1

    async def test_timeout_is_recorded(self, inline: Pulse) -> None:
        async def slow(_: Any) -> None:
            await trio.sleep(60)

        inline.handle("slow", slow)
        config = JobConfig(max_retries=0, timeout=timedelta(seconds=5))

        job = await inline.status(await inline.enqueue_with_config("slow", 1, config))

        assert job.status is JobStatus.DEAD
        assert job.last_error is not None
        assert job.last_error.startswith("JobTimeout: attempt 1 timed out after 5 s")
        assert "await trio.sleep(60)" in job.errors[0].traceback

    async def test_cancelled_caller_releases_job(self, inline: Pulse) -> None:
        inline.handle("hang", hang)

        with trio.move_on_after(5):
            await inline.enqueue("hang")

        [job] = await inline.list_jobs()
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        assert job.errors == ()

    async def test_keyboard_interrupt_propagates(self, inline: Pulse) -> None:
        async def interrupt(_: Any) -> None:
            raise KeyboardInterrupt

        inline.handle("interrupt", interrupt)

        with pytest.raises(KeyboardInterrupt):
            await inline.enqueue("interrupt")
        [job] = await inline.list_jobs()
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0

    async def test_enqueue_many_runs_in_order(self, inline: Pulse) -> None:
        seen: list[int] = []

        async def record(payload: int) -> None:
            seen.append(payload)

        inline.handle("record", record)

        ids = await inline.enqueue_many("record", [3, 1, 2])

        assert seen == [3, 1, 2]
        statuses = [(await inline.status(job_id)).status for job_id in ids]
        assert statuses == [JobStatus.COMPLETED] * 3

    async def test_nested_enqueue_runs_depth_first(self, inline: Pulse) -> None:
        order: list[str] = []

        async def outer(_: Any) -> None:
            order.append("outer starts")
            await inline.enqueue("inner")
            order.append("outer ends")

        async def inner(_: Any) -> None:
            order.append("inner")

        inline.handle("outer", outer)
        inline.handle("inner", inner)

        await inline.enqueue("outer")

        assert order == ["outer starts", "inner", "outer ends"]

    async def test_schedule_in_future_waits_for_drain(self, inline: Pulse) -> None:
        seen: list[str] = []

        async def record(payload: str) -> None:
            seen.append(payload)

        inline.handle("record", record)
        start = trio.current_time()

        later = await inline.schedule("record", "later", delay=timedelta(hours=2))
        past = await inline.schedule(
            "record", "past", datetime.now(UTC) - timedelta(days=1)
        )

        assert seen == ["past"]
        assert (await inline.status(later)).status is JobStatus.SCHEDULED
        assert (await inline.status(past)).status is JobStatus.COMPLETED
        await inline.drain()
        assert seen == ["past"]
        await inline.drain(include_scheduled=True)
        assert seen == ["past", "later"]
        assert trio.current_time() - start == pytest.approx(7200, abs=0.01)

    async def test_unhandled_job_stays_pending(
        self, inline: Pulse, caplog: pytest.LogCaptureFixture
    ) -> None:
        caplog.set_level(logging.WARNING, logger="pulse_trio")

        job_id = await inline.enqueue("unknown", 1)

        assert (await inline.status(job_id)).status is JobStatus.PENDING
        assert any(
            "no handler is registered for it on this inline queue" in record.message
            and job_id in record.message
            for record in caplog.records
        )

        inline.handle("unknown", noop)
        await inline.drain()
        assert (await inline.status(job_id)).status is JobStatus.COMPLETED

    async def test_drain_runs_in_priority_order(self, inline: Pulse) -> None:
        seen: list[str] = []
        await inline.enqueue_with_config("record", "low", JobConfig(priority="LOW"))
        await inline.enqueue_with_config(
            "record", "critical", JobConfig(priority=JobPriority.CRITICAL)
        )
        await inline.enqueue("record", "normal")

        async def record(payload: str) -> None:
            seen.append(payload)

        inline.handle("record", record)
        await inline.drain()

        assert seen == ["critical", "normal", "low"]

    async def test_retried_dead_job_runs_on_drain(self, inline: Pulse) -> None:
        calls: list[int] = []

        async def fail_first(_: Any) -> None:
            calls.append(1)
            if len(calls) == 1:
                raise ValueError("first run fails")

        inline.handle("job", fail_first)
        job_id = await inline.enqueue_with_config("job", None, JobConfig.no_retry())
        assert (await inline.status(job_id)).status is JobStatus.DEAD

        await inline.retry(job_id)
        await inline.drain()

        job = await inline.status(job_id)
        assert job.status is JobStatus.COMPLETED
        assert len(job.errors) == 1

    async def test_run_is_rejected(self, inline: Pulse) -> None:
        with pytest.raises(PulseError, match=r"inline queue .* has no run\(\)"):
            await inline.run()
        # async with starts run() in a nursery; the error still comes bare.
        with pytest.raises(PulseError, match="inline queue"):
            async with inline:
                pass

    async def test_handler_rules_still_apply(self, inline: Pulse) -> None:
        inline.handle("noop", noop)

        with pytest.raises(HandlerError, match="already registered"):
            inline.handle("noop", noop)

    async def test_wait_returns_finished_job(self, inline: Pulse) -> None:
        inline.handle("noop", noop)

        job = await run_job(inline, "noop", [1, 2])

        assert job.status is JobStatus.COMPLETED
        assert job.payload == [1, 2]


# -- the plugin in a pytest session of its own ----------------------------------


PLUGIN_CONFTEST = 'pytest_plugins = ["pulse_trio.testing"]\n'
PLUGIN_INI = "[pytest]\ntrio_mode = true\n"


def run_session(pytester: pytest.Pytester, files: Mapping[str, str]) -> Any:
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    pytester.syspathinsert()
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", "-q")


class TestPlugin:
    def test_fixtures_load_from_conftest(self, pytester: pytest.Pytester) -> None:
        test = (
            "import trio\n"
            "from pulse_trio import Pulse\n"
            "async def test_running(pulse, autojump_clock):\n"
            "    assert isinstance(pulse, Pulse)\n"
            "    await trio.sleep(3600)\n"
            "async def test_inline(inline_pulse):\n"
            "    assert isinstance(inline_pulse, Pulse)\n"
        )
        result = run_session(
            pytester,
            {
                "conftest.py": PLUGIN_CONFTEST,
                "pytest.ini": PLUGIN_INI,
                "test_a.py": test,
            },
        )

        result.assert_outcomes(passed=2)

    def test_failing_test_still_tears_down(self, pytester: pytest.Pytester) -> None:
        test = (
            "import trio\n"
            "async def hang(_):\n"
            "    await trio.sleep_forever()\n"
            "async def test_fails_with_job_running(pulse, autojump_clock):\n"
            "    pulse.handle('hang', hang)\n"
            "    await pulse.enqueue('hang')\n"
            "    await trio.sleep(1)\n"
            "    assert False, 'deliberate failure'\n"
        )
        result = run_session(
            pytester,
            {
                "conftest.py": PLUGIN_CONFTEST,
                "pytest.ini": PLUGIN_INI,
                "test_b.py": test,
            },
        )

        result.assert_outcomes(failed=1)
        assert "deliberate failure" in result.stdout.str()


# -- the examples on the docs pages ---------------------------------------------


FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
FILE_NAME = re.compile(r"# ([\w.]+\.(?:py|ini))\n")


def example_files(page: Path) -> dict[str, str]:
    """Return the example files of a page: each ``python`` or ``ini`` block
    whose first line is a comment naming its file."""
    files = {}
    for language, body in FENCE.findall(page.read_text()):
        if language not in ("python", "ini"):
            continue
        match = FILE_NAME.match(body)
        assert match, f"a {language} block of {page.name} names no file:\n{body}"
        assert match.group(1) not in files, f"{page.name}: {match.group(1)} twice"
        files[match.group(1)] = body
    return files


def count_tests(files: Mapping[str, str]) -> int:
    return sum(
        len(re.findall(r"^(?:async )?def test_", text, re.MULTILINE))
        for name, text in files.items()
        if name.startswith("test_")
    )


@pytest.mark.parametrize("page", ["testing.md", "events.md"])
def test_docs_examples_pass(page: str, pytester: pytest.Pytester) -> None:
    files = example_files(DOCS / page)
    files.setdefault("conftest.py", PLUGIN_CONFTEST)
    files.setdefault("pytest.ini", PLUGIN_INI)
    for name, text in files.items():
        if name.endswith(".py"):
            compile(text, name, "exec")

    result = run_session(pytester, files)

    expected = count_tests(files)
    assert expected >= 1
    result.assert_outcomes(passed=expected)
