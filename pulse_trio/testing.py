"""Pytest fixtures and helpers for testing code that uses pulse-trio.

Load the fixtures from the root ``conftest.py`` of a project::

    pytest_plugins = ["pulse_trio.testing"]

They need pytest and pytest-trio (``pip install "pulse-trio[test]"``):

``pulse``
    An in-memory :class:`~pulse_trio.Pulse`, already running in the test's
    pytest-trio ``nursery``, shut down with :meth:`~pulse_trio.Pulse.shutdown_now`
    and closed after the test.
``inline_pulse``
    An in-memory queue in inline mode (``Pulse.in_memory(inline=True)``),
    where each job runs inside the enqueue call that stores it. Closed
    after the test.
``pulse_handlers``
    The handlers, by job name, that both queues register before the test
    starts. It is empty; override it in a ``conftest.py`` or test module.
``pulse_workers``
    How many jobs the ``pulse`` queue runs at once: 4. Override it to return
    1 to run jobs one at a time, in priority order.

Request pytest-trio's ``autojump_clock`` fixture in a test to run it on a
:class:`trio.testing.MockClock` that jumps ahead whenever every task is
blocked, so backoffs, timeouts and scheduled jobs take no real time.

This module contains no asserts, so it turns off pytest's assertion
rewriting for itself with the marker PYTEST_DONT_REWRITE. Without it,
pytest warns when a test module imports a helper from here before the
plugin is loaded.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager

import pytest
import trio

from ._config import JobConfig
from ._events import JobEvent
from ._handlers import HandlerFunction
from ._job import Job
from ._pulse import Pulse

__all__ = [
    "inline_pulse",
    "pulse",
    "pulse_handlers",
    "pulse_workers",
    "recorded_events",
    "run_job",
]

DEFAULT_TEST_WORKERS = 4
"""Workers of the ``pulse`` fixture, unless ``pulse_workers`` is overridden."""

TEARDOWN_TIMEOUT = 30.0
"""Seconds the ``pulse`` fixture waits for its queue to stop after a test."""


# -- fixtures -------------------------------------------------------------


@pytest.fixture
def pulse_handlers() -> Mapping[str, HandlerFunction]:
    """Handlers by job name, registered on ``pulse`` and ``inline_pulse``.

    Override this fixture to register handlers before the queue starts.
    Handlers can also be added to the running queue with
    :meth:`~pulse_trio.Pulse.handle` during the test.
    """
    return {}


@pytest.fixture
def pulse_workers() -> int:
    """How many jobs the ``pulse`` fixture runs at once.

    Override it to return 1 to see jobs run one at a time. The queue is
    already running, so a job whose handler is registered starts as soon as
    it is enqueued: to test priority order, enqueue every job first and
    register the handler after.
    """
    return DEFAULT_TEST_WORKERS


@pytest.fixture
async def pulse(
    nursery: trio.Nursery,
    pulse_handlers: Mapping[str, HandlerFunction],
    pulse_workers: int,
) -> AsyncIterator[Pulse]:
    """Yield an in-memory queue running in the test's nursery, and stop it after."""
    queue = Pulse.in_memory(workers=pulse_workers)
    _register(queue, pulse_handlers)
    await nursery.start(queue.run)
    try:
        yield queue
    finally:
        # Shielded because a failing test cancels its fixtures, and the
        # queue must still stop before its database is closed.
        with trio.move_on_after(TEARDOWN_TIMEOUT, shield=True):
            await queue.shutdown_now()
        queue.close()


@pytest.fixture
async def inline_pulse(
    pulse_handlers: Mapping[str, HandlerFunction],
) -> AsyncIterator[Pulse]:
    """Yield an in-memory queue in inline mode, and close it after."""
    queue = Pulse.in_memory(inline=True)
    _register(queue, pulse_handlers)
    try:
        yield queue
    finally:
        queue.close()


def _register(queue: Pulse, handlers: Mapping[str, HandlerFunction]) -> None:
    for name, handler in handlers.items():
        queue.handle(name, handler)


# -- helpers --------------------------------------------------------------


async def run_job(
    pulse: Pulse, name: str, payload: object = None, config: JobConfig | None = None
) -> Job:
    """Enqueue a job, wait until it is completed or dead, and return it.

    The queue must be running, or be inline. On a queue with no handler
    for *name* this waits forever, because the job stays pending.
    """
    job_id = await pulse.enqueue_with_config(name, payload, config)
    return await pulse.wait(job_id)


@contextmanager
def recorded_events(pulse: Pulse) -> Iterator[list[JobEvent]]:
    """Collect the :class:`~pulse_trio.JobEvent` objects sent inside the block.

    Yields the list that receives them, in the order they were sent; it
    stops growing when the block exits.
    """
    events: list[JobEvent] = []
    remove = pulse.add_listener(events.append)
    try:
        yield events
    finally:
        remove()
