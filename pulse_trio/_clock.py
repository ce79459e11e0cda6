"""Wall-clock time derived from trio's clock.

Due times are stored as wall-clock instants (UTC microseconds), because
``trio.current_time()`` has an arbitrary offset per run. Under a
:class:`trio.testing.MockClock`, wall time advances with the virtual clock
from an anchor taken when the run first reads it, so a job scheduled an hour
ahead runs after one virtual hour. Under any other clock it is the system
clock, read afresh each time, and callers that sleep towards a wall-clock
instant nap for at most :data:`MAX_NAP` so that a jump of the system clock
is noticed within that time.
"""

from __future__ import annotations

import math
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import trio
import trio.testing

MAX_NAP = 60.0
"""Longest sleep, in seconds, towards a wall-clock instant."""


class WallClock:
    """Source of wall-clock time in UTC microseconds for one :class:`Pulse`."""

    def __init__(self, system_time_ns: Callable[[], int] = time.time_ns) -> None:
        self._system_time_ns = system_time_ns
        self._token: object = None
        self._mock = False
        self._wall0 = 0
        self._trio0 = 0.0

    def now_us(self) -> int:
        """Return the current wall-clock time in UTC microseconds.

        Must be called inside a trio run.
        """
        token = trio.lowlevel.current_trio_token()
        if token is not self._token:
            self._anchor(token)
        if not self._mock:
            return self._system_time_ns() // 1000
        elapsed = trio.current_time() - self._trio0
        # Rounding down keeps the wall clock from reaching a due time before
        # the virtual clock has passed it.
        return self._wall0 + math.floor(elapsed * 1_000_000)

    def is_mock(self) -> bool:
        """Tell whether the current trio run uses a MockClock."""
        self.now_us()
        return self._mock

    def deadline_for(self, at_us: int) -> float:
        """Return the trio deadline of a nap towards wall time *at_us*.

        Under the system clock the nap lasts at most :data:`MAX_NAP`
        seconds, after which the caller reads the wall clock again. It ends
        one microsecond after *at_us*, so that rounding of the float
        deadline never wakes the caller early.
        """
        wait = (max(at_us - self.now_us(), 0) + 1) / 1_000_000
        if self._mock:
            return trio.current_time() + wait  # a mock wall clock cannot jump
        return trio.current_time() + min(wait, MAX_NAP)

    def _anchor(self, token: object) -> None:
        self._token = token
        self._mock = isinstance(trio.lowlevel.current_clock(), trio.testing.MockClock)
        self._wall0 = self._system_time_ns() // 1000
        self._trio0 = trio.current_time()


# Threads in flight per MockClock, with the threshold to restore after them.
_paused: weakref.WeakKeyDictionary[trio.testing.MockClock, tuple[int, float]] = (
    weakref.WeakKeyDictionary()
)


@contextmanager
def autojump_paused() -> Iterator[None]:
    """Stop a MockClock from jumping while a thread runs.

    While a thread runs, every trio task may be blocked, so a MockClock with
    autojump would leap to the next deadline and fire timeouts that real
    time never reached. Inside this block the autojump threshold is
    infinite; the previous threshold returns when the last such block exits.
    Under any other clock this does nothing.
    """
    clock = trio.lowlevel.current_clock()
    if not isinstance(clock, trio.testing.MockClock):
        yield
        return
    count, saved = _paused.get(clock, (0, clock.autojump_threshold))
    _paused[clock] = (count + 1, saved)
    clock.autojump_threshold = math.inf
    try:
        yield
    finally:
        count, saved = _paused[clock]
        if count == 1:
            del _paused[clock]
            clock.autojump_threshold = saved
        else:
            _paused[clock] = (count - 1, saved)
