"""Random workloads checked against a plain model of the retry rules.

Each example enqueues random jobs with a random priority, retry count,
backoff, timeout and outcome of each run. It runs them on an in-memory
queue under the mock clock. Then it either waits for every job to finish
or shuts the queue down at a random moment. The final state read back
from the database must match the model: how many runs a job got, which
errors were stored, and whether it completed or died.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Literal

import attrs
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pulse_trio import (
    Job,
    JobConfig,
    JobPriority,
    JobStatus,
    Pulse,
    QueueClosed,
    current_job,
)

from .helpers import FINISHED, count_jobs, wait_finished

Behaviour = Literal["ok", "fail", "group", "hang"]

TIME_TOLERANCE = 1e-3
"""Virtual seconds by which two computed times may differ from float rounding."""


@attrs.frozen
class JobPlan:
    """One random job and what each of its runs does."""

    config: JobConfig
    behaviours: tuple[Behaviour, ...]
    """Outcome of each run, the first run first. Runs past the end succeed."""
    work: float
    """Virtual seconds that a run works before it returns or raises."""
    enqueue_at: float
    """Virtual seconds from the start of the example to the enqueue.

    0 means before run() starts."""
    delay: float
    """Seconds from enqueue until the job is due."""

    def behaviour(self, attempt: int) -> Behaviour:
        if attempt <= len(self.behaviours):
            return self.behaviours[attempt - 1]
        return "ok"

    def expected(self) -> tuple[JobStatus, int, list[Behaviour]]:
        """Return the final status, the runs used and each failed run's kind."""
        failures: list[Behaviour] = []
        for attempt in range(1, self.config.max_retries + 2):
            behaviour = self.behaviour(attempt)
            if behaviour == "ok":
                return JobStatus.COMPLETED, attempt, failures
            failures.append(behaviour)
        return JobStatus.DEAD, self.config.max_retries + 1, failures


@attrs.frozen
class Shutdown:
    kind: Literal["graceful", "now"]
    at: float
    """Virtual seconds after run() starts."""
    grace: float | None = None
    """Timeout of a graceful shutdown."""


@attrs.frozen
class Scenario:
    workers: int
    jobs: tuple[JobPlan, ...]
    shutdown: Shutdown | None


@st.composite
def job_plans(draw: st.DrawFn) -> JobPlan:
    timeout = draw(st.sampled_from([None, 1.0, 3.0, 10.0]))
    kinds: list[Behaviour] = ["ok", "fail", "group"]
    if timeout is not None:
        kinds.append("hang")
    config = JobConfig(
        priority=draw(st.sampled_from(list(JobPriority))),
        max_retries=draw(st.integers(0, 3)),
        retry_delay=draw(st.sampled_from([0, 0.5, 2.0, 7.0])),
        max_retry_delay=draw(st.sampled_from([1.0, 5.0, 60.0])),
        timeout=timeout,
    )
    return JobPlan(
        config=config,
        behaviours=tuple(draw(st.lists(st.sampled_from(kinds), max_size=5))),
        work=draw(st.sampled_from([0.0, 0.1, 0.5])),
        enqueue_at=draw(st.sampled_from([0.0, 0.0, 1.0, 4.0, 15.0])),
        delay=draw(st.sampled_from([0.0, 0.0, 3.0, 20.0])),
    )


shutdowns = st.one_of(
    st.none(),
    st.builds(
        Shutdown,
        kind=st.just("graceful"),
        at=st.sampled_from([0.0, 0.3, 2.0, 9.0, 25.0]),
        grace=st.sampled_from([None, 0.2, 2.5]),
    ),
    st.builds(
        Shutdown, kind=st.just("now"), at=st.sampled_from([0.0, 0.3, 2.0, 9.0, 25.0])
    ),
)

scenarios = st.builds(
    Scenario,
    workers=st.integers(1, 3),
    jobs=st.lists(job_plans(), min_size=1, max_size=6).map(tuple),
    shutdown=shutdowns,
)


@attrs.define
class Observations:
    """What the handlers saw while the example ran."""

    starts: dict[int, list[tuple[int, float]]] = attrs.field(
        factory=lambda: defaultdict(list)
    )
    """Per job: attempt number and virtual start time of each run."""
    ends: dict[int, list[float]] = attrs.field(factory=lambda: defaultdict(list))
    running: int = 0
    max_running: int = 0


def make_handler(plans: tuple[JobPlan, ...], seen: Observations) -> Any:
    async def fail_in_child(attempt: int) -> None:
        raise ValueError(f"planned failure in child on attempt {attempt}")

    async def planned(payload: dict[str, int]) -> None:
        index = payload["job"]
        plan = plans[index]
        attempt = current_job().attempt
        seen.starts[index].append((attempt, trio.current_time()))
        seen.running += 1
        seen.max_running = max(seen.max_running, seen.running)
        try:
            behaviour = plan.behaviour(attempt)
            if behaviour == "hang":
                await trio.sleep_forever()
            await trio.sleep(plan.work)
            if behaviour == "fail":
                raise ValueError(f"planned failure on attempt {attempt}")
            if behaviour == "group":
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(fail_in_child, attempt)
        finally:
            seen.running -= 1
            seen.ends[index].append(trio.current_time())

    return planned


def check_errors(plan: JobPlan, job: Job, failures: list[Behaviour]) -> None:
    """Check that the job's stored errors match the first planned failures."""
    assert len(job.errors) <= len(failures)
    pairs = zip(job.errors, failures, strict=False)
    for number, (error, kind) in enumerate(pairs, start=1):
        assert error.attempt == number
        if kind == "fail":
            assert error.error == f"ValueError: planned failure on attempt {number}"
        elif kind == "group":
            assert error.error.startswith("ExceptionGroup: ")
            assert f"planned failure in child on attempt {number}" in error.traceback
        else:
            assert plan.config.timeout is not None
            seconds = plan.config.timeout.total_seconds()
            assert error.error.startswith(
                f"JobTimeout: attempt {number} timed out after {seconds:g} s"
            )


def check_backoff(plan: JobPlan, job: Job, starts: list[tuple[int, float]]) -> None:
    """Check that no run started before the backoff of the failure before it."""
    start_of = dict(starts)
    for error in job.errors:
        following = start_of.get(error.attempt + 1)
        if following is None:
            continue
        failed_at = start_of[error.attempt] + (
            plan.config.timeout.total_seconds()
            if plan.behaviour(error.attempt) == "hang" and plan.config.timeout
            else plan.work
        )
        backoff = min(
            plan.config.retry_delay.total_seconds() * 2 ** (error.attempt - 1),
            plan.config.max_retry_delay.total_seconds(),
        )
        assert following >= failed_at + backoff - TIME_TOLERANCE


async def enqueue_plan(
    pulse: Pulse, index: int, plan: JobPlan, stored: dict[int, str]
) -> None:
    payload = {"job": index}
    try:
        if plan.delay:
            stored[index] = await pulse.schedule(
                "planned", payload, delay=plan.delay, config=plan.config
            )
        else:
            stored[index] = await pulse.enqueue_with_config(
                "planned", payload, plan.config
            )
    except QueueClosed:
        pass  # enqueued after the shutdown began, so nothing was stored


async def enqueue_later(
    pulse: Pulse, plans: tuple[JobPlan, ...], stored: dict[int, str]
) -> None:
    start = trio.current_time()
    for index in sorted(range(len(plans)), key=lambda i: plans[i].enqueue_at):
        plan = plans[index]
        if plan.enqueue_at == 0:
            continue
        await trio.sleep_until(start + plan.enqueue_at)
        await enqueue_plan(pulse, index, plan, stored)


@settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(scenario=scenarios)
async def test_queue_matches_model(scenario: Scenario) -> None:
    plans = scenario.jobs
    pulse = Pulse.in_memory(workers=scenario.workers)
    seen = Observations()
    stored: dict[int, str] = {}
    pulse.handle("planned", make_handler(plans, seen))
    try:
        for index, plan in enumerate(plans):
            if plan.enqueue_at == 0:
                await enqueue_plan(pulse, index, plan, stored)

        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            nursery.start_soon(enqueue_later, pulse, plans, stored)
            if scenario.shutdown is None:
                await trio.sleep(max(plan.enqueue_at for plan in plans) + 0.01)
                await wait_finished(pulse, stored.values(), interval=0.25)
                await pulse.shutdown_graceful()
            else:
                await trio.sleep(scenario.shutdown.at)
                if scenario.shutdown.kind == "now":
                    await pulse.shutdown_now()
                else:
                    await pulse.shutdown_graceful(timeout=scenario.shutdown.grace)
            nursery.cancel_scope.cancel()  # stops enqueue_later if it still runs

        jobs = {index: await pulse.status(job_id) for index, job_id in stored.items()}
        assert count_jobs(pulse) == len(stored)
    finally:
        pulse.close()

    assert seen.max_running <= scenario.workers
    for index, job in jobs.items():
        plan = plans[index]
        status, attempts, failures = plan.expected()
        starts = seen.starts[index]

        check_errors(plan, job, failures)
        check_backoff(plan, job, starts)
        # Runs of one job never overlap.
        for end, (_, next_start) in zip(seen.ends[index], starts[1:], strict=False):
            assert next_start >= end - TIME_TOLERANCE
        assert job.status is not JobStatus.RUNNING
        assert job.priority is plan.config.priority

        if scenario.shutdown is None:
            assert job.status is status
            assert job.attempts == attempts
            assert len(job.errors) == len(failures)
            assert [attempt for attempt, _ in starts] == list(range(1, attempts + 1))
            continue

        if job.status in FINISHED:
            assert job.status is status
            assert job.attempts == attempts
            assert len(job.errors) == len(failures)
        else:
            # Interrupted runs do not count, so the stored attempts are the
            # runs that recorded a failure.
            assert job.attempts == len(job.errors)
            assert job.attempts < attempts
        # Runs cancelled by a shutdown are the only ones not recorded.
        released = len(starts) - job.attempts
        assert released >= 0
        graceful_waits = scenario.shutdown.kind == "graceful" and (
            scenario.shutdown.grace is None
        )
        if graceful_waits:
            assert released == 0
