"""Handlers: the functions that run jobs, by job name."""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from ._clock import autojump_paused
from ._errors import HandlerError, InvalidJobName

AsyncHandler = Callable[[Any], Awaitable[object]]
SyncHandler = Callable[[Any], object]
HandlerFunction = AsyncHandler | SyncHandler


MAX_JOB_NAME_LENGTH = 200
"""Maximum length of a job name, in characters."""


def check_job_name(name: object) -> str:
    """Return *name* if it is a valid job name, else raise InvalidJobName."""
    if not isinstance(name, str):
        raise InvalidJobName(
            f"job name must be a str, not {type(name).__name__} ({name!r})"
        )
    if not name.strip():
        raise InvalidJobName(f"job name must not be empty or blank, got {name!r}")
    if len(name) > MAX_JOB_NAME_LENGTH:
        raise InvalidJobName(
            f"job name is {len(name)} characters long, over the limit of "
            f"{MAX_JOB_NAME_LENGTH}: {name[:40]!r}...; use a short name and put "
            "data in the payload"
        )
    try:
        name.encode()
    except UnicodeEncodeError as exc:
        raise InvalidJobName(
            f"job name {name!r} is not valid Unicode ({exc.reason} at position "
            f"{exc.start}); remove lone surrogates"
        ) from None
    return name


def _is_async(fn: object) -> bool:
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)  # noqa: B004 - instances with async __call__
    return inspect.iscoroutinefunction(call)


def _check_signature(name: str, function: Any) -> None:
    """Raise HandlerError unless *function* accepts the payload as its one
    positional argument."""
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError):
        return  # a builtin without a signature: its first run shows a mismatch
    try:
        signature.bind(None)
    except TypeError as exc:
        raise HandlerError(
            f"handler for job {name!r} must accept the payload as one positional "
            f"argument, but {function!r} has the signature {signature} ({exc})"
        ) from None


@attrs.frozen
class Handler:
    """A registered handler and how to call it."""

    name: str
    function: HandlerFunction
    is_async: bool

    @classmethod
    def wrap(cls, name: str, function: object) -> Handler:
        if not callable(function):
            raise HandlerError(
                f"handler for job {name!r} must be callable, "
                f"not {type(function).__name__} ({function!r})"
            )
        if inspect.isasyncgenfunction(function) or inspect.isgeneratorfunction(
            function
        ):
            # Calling one only makes a generator; its body would never run.
            raise HandlerError(
                f"handler for job {name!r} is a generator function "
                f"({function!r}); register an 'async def' function, or a plain "
                "function that does the work when called"
            )
        _check_signature(name, function)
        return cls(name=name, function=function, is_async=_is_async(function))

    async def call(self, payload: Any) -> None:
        """Run the handler: on the event loop if async, else in a thread.

        A thread cannot be interrupted, so a timeout or a shutdown waits
        for a plain function to return.
        """
        if self.is_async:
            await self.function(payload)  # type: ignore[misc]
            return
        # trio.to_thread.run_sync raises TypeError if the function returns
        # a coroutine, so a forgotten 'async' fails the run with that error.
        with autojump_paused():
            await trio.to_thread.run_sync(self.function, payload)


class Registry:
    """Handlers by job name."""

    def __init__(self) -> None:
        self._handlers: dict[str, Handler] = {}
        self._names: frozenset[str] = frozenset()

    def add(self, name: str, function: object) -> None:
        check_job_name(name)
        if name in self._handlers:
            raise HandlerError(
                f"a handler for job {name!r} is already registered "
                f"({self._handlers[name].function!r}); register each name once"
            )
        self._handlers[name] = Handler.wrap(name, function)
        self._names = frozenset(self._handlers)

    def get(self, name: str) -> Handler | None:
        return self._handlers.get(name)

    def names(self) -> frozenset[str]:
        return self._names
