"""Test configuration: every async test runs under an autojump MockClock.

Each test gets a deadline. A test under the mock clock fails once a virtual
day passes without it finishing (a deadlock jumps there at once), and any
test is stopped with a traceback of every thread after REAL_TIME_LIMIT real
seconds. Tests marked ``processes`` start real processes, so they run on
the real clock with a deadline in real seconds instead.
"""

from __future__ import annotations

import faulthandler
import functools
import inspect
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest
import trio
import trio.testing

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


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if _is_async_test(item):
            real_time = item.get_closest_marker("processes") is not None
            run = functools.partial(_run, real_time=real_time)
            item.add_marker(pytest.mark.trio(run=run))


@pytest.fixture(autouse=True)
def _real_time_limit() -> Iterator[None]:
    faulthandler.dump_traceback_later(REAL_TIME_LIMIT, exit=True)
    yield
    faulthandler.cancel_dump_traceback_later()
