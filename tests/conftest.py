"""Test configuration: every async test runs under an autojump MockClock.

Each test gets a deadline. A test under the mock clock fails once a virtual
day passes without it finishing (a deadlock jumps there at once), and any
test is stopped with a traceback of every thread after REAL_TIME_LIMIT real
seconds. Tests marked ``processes`` start real processes, so they run on
the real clock with a deadline in real seconds instead.
"""

from __future__ import annotations

import contextlib
import faulthandler
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing

from pulse_trio import Pulse, PulseError

VIRTUAL_DEADLINE = 24 * 3600.0
REAL_TIME_LIMIT = 300.0
PROCESS_TEST_DEADLINE = 240.0


def _run(
    fn: Callable[[], Awaitable[Any]],
    *,
    clock: trio.abc.Clock | None = None,
    instruments: Any = (),
    real_time: bool = False,
) -> Any:
    deadline = PROCESS_TEST_DEADLINE if real_time else VIRTUAL_DEADLINE

    async def with_deadline() -> Any:
        with trio.fail_after(deadline):
            return await fn()

    if clock is None and not real_time:
        clock = trio.testing.MockClock(autojump_threshold=0)
    return trio.run(with_deadline, clock=clock, instruments=instruments)


def _is_async_test(item: pytest.Item) -> bool:
    function = getattr(item, "obj", None)
    inner = getattr(getattr(function, "hypothesis", None), "inner_test", function)
    return inspect.iscoroutinefunction(inner)


def _run_hypothesis_examples(function: Any, *, real_time: bool) -> None:
    """Run each example of an async Hypothesis test in its own ``_run``.

    pytest-trio runs the examples of a ``@given`` test with plain
    ``trio.run``, ignoring the ``run`` of the trio marker, so without this
    they would run on the real clock with no deadline. The wrapped test is
    synchronous, so pytest-trio leaves it alone.
    """
    hypothesis_handle = function.hypothesis
    inner = hypothesis_handle.inner_test
    if getattr(inner, "_runs_under_conftest", False):
        return  # parametrized copies share one inner test

    @functools.wraps(inner)
    def run_example(*args: Any, **kwargs: Any) -> Any:
        example = functools.partial(inner, *args, **kwargs)
        return _run(example, real_time=real_time)

    run_example._runs_under_conftest = True  # type: ignore[attr-defined]
    hypothesis_handle.inner_test = run_example


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_async_test(item):
            real_time = item.get_closest_marker("processes") is not None
            function = getattr(item, "obj", None)
            if hasattr(function, "hypothesis"):
                _run_hypothesis_examples(function, real_time=real_time)
                continue
            run = functools.partial(_run, real_time=real_time)
            item.add_marker(pytest.mark.trio(run=run))


@pytest.fixture(autouse=True)
def _real_time_limit() -> Iterator[None]:
    faulthandler.dump_traceback_later(REAL_TIME_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()


@pytest.fixture(params=["file", "memory"])
def open_queue(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[Callable[..., Awaitable[Pulse]]]:
    """Return a function that opens a queue, once on a file and once in memory.

    In the file case every call opens the same file. Keyword arguments go
    to :meth:`Pulse.new` or :meth:`Pulse.in_memory`, and ``workers``
    defaults to 1. Every queue it opens is closed after the test.
    """
    opened: list[Pulse] = []

    async def open_queue(*, workers: int = 1, **options: Any) -> Pulse:
        if request.param == "file":
            pulse = await Pulse.new(tmp_path / "queue.db", workers=workers, **options)
        else:
            pulse = Pulse.in_memory(workers=workers, **options)
        opened.append(pulse)
        return pulse

    yield open_queue
    _close_all(opened)


@pytest.fixture
def database_path(tmp_path: Path) -> Path:
    """Path of a queue database file that does not exist yet."""
    return tmp_path / "queue.db"


@pytest.fixture
def open_file_queue(
    database_path: Path,
) -> Iterator[Callable[..., Awaitable[Pulse]]]:
    """Return a function that opens a queue on ``database_path``.

    Call it again to open a second queue on the same file, as a restarted
    program would. Every queue it opens is closed after the test.
    """
    opened: list[Pulse] = []

    async def open_file_queue(*, workers: int = 1, **options: Any) -> Pulse:
        pulse = await Pulse.new(database_path, workers=workers, **options)
        opened.append(pulse)
        return pulse

    yield open_file_queue
    _close_all(opened)


def _close_all(queues: list[Pulse]) -> None:
    for pulse in queues:
        # A queue that a failed test left running cannot be closed, and its
        # connection goes with the process.
        with contextlib.suppress(PulseError):
            pulse.close()
