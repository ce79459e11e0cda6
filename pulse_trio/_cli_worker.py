"""The ``worker`` command: load an application's queue and run it until a signal.

The first SIGINT or SIGTERM starts a graceful shutdown: no job is claimed
after it, and running jobs get the shutdown timeout to finish before they
are cancelled and put back to pending. A second signal cancels them at once.
"""

from __future__ import annotations

import importlib
import inspect
import logging
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import timedelta

import trio

from . import Pulse, PulseError
from ._cli_values import AppPath, CommandError

logger = logging.getLogger("pulse_trio.cli")

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)

EXIT_INTERRUPTED = 130
"""Exit status after a KeyboardInterrupt, as shells report a SIGINT death."""


class AppError(Exception):
    """The application's own code raised while its queue was being loaded.

    The message names the step that failed. The cause is the application's
    exception, and its traceback is shown because it points into the
    application.
    """


# -- loading the application ----------------------------------------------


def import_app_module(app: AppPath, app_dir: str) -> object:
    """Import the module of *app* from *app_dir* or ``sys.path``, and return
    the object its attribute path names."""
    folder = os.path.abspath(app_dir)
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        module = importlib.import_module(app.module)
    except ModuleNotFoundError as exc:
        if exc.name is None or not _is_prefix(exc.name, app.module):
            raise AppError(f"importing app module {app.module!r} failed") from exc
        raise CommandError(
            f"cannot import app module {app.module!r} of APP {str(app)!r}: {exc}; "
            f"check the name, and run from its folder or pass --app-dir "
            f"(now {folder!r})"
        ) from None
    except Exception as exc:
        raise AppError(f"importing app module {app.module!r} failed") from exc
    value: object = module
    for part in app.attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CommandError(
                f"app module {app.module!r} has no attribute {app.attribute!r}; "
                "APP must name a Pulse, or a function that returns one"
            ) from None
    return value


def _is_prefix(missing: str, module: str) -> bool:
    return module == missing or module.startswith(missing + ".")


async def load_app(app: AppPath, app_dir: str) -> Pulse:
    """Return the :class:`Pulse` that *app* names, calling it if a function.

    Raises:
        CommandError: *app* cannot be imported or names something else.
        AppError: The application's code raised.
    """
    value = import_app_module(app, app_dir)
    if isinstance(value, Pulse):
        return value
    if not callable(value):
        raise CommandError(
            f"APP {str(app)!r} is a {type(value).__name__}, not a Pulse or a "
            "function that returns one"
        )
    try:
        result = value()
        if inspect.isawaitable(result):
            result = await result
    except Exception as exc:
        raise AppError(f"calling {str(app)!r} to create the queue failed") from exc
    if not isinstance(result, Pulse):
        raise CommandError(
            f"APP {str(app)!r} returned a {type(result).__name__}, not a Pulse"
        )
    return result


# -- running --------------------------------------------------------------


async def serve(pulse: Pulse, shutdown_timeout: timedelta) -> None:
    """Run *pulse* until a stop signal has shut it down, then close it."""
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        try:
            async with trio.open_nursery() as nursery:
                await nursery.start(_run_queue, pulse, nursery.cancel_scope)
                _log_started(pulse, shutdown_timeout)
                await _stop_on_signals(pulse, signals, shutdown_timeout, nursery)
        finally:
            pulse.close()
    logger.info("worker stopped")


async def _run_queue(
    pulse: Pulse,
    scope: trio.CancelScope,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    await pulse.run(task_status=task_status)
    scope.cancel()  # the queue has stopped, so stop listening for signals


def _log_started(pulse: Pulse, shutdown_timeout: timedelta) -> None:
    names = sorted(pulse.handled_names())
    logger.info(
        "worker started (pid %d) on database %s (workers: %d) for jobs: %s; "
        "SIGINT or SIGTERM shuts down gracefully (shutdown timeout %g s), "
        "a second signal at once",
        os.getpid(),
        pulse.database,
        pulse.workers,
        ", ".join(names) if names else "none (no handler is registered)",
        shutdown_timeout.total_seconds(),
    )


async def _stop_on_signals(
    pulse: Pulse,
    signals: AsyncIterator[int],
    shutdown_timeout: timedelta,
    nursery: trio.Nursery,
) -> None:
    received = 0
    async for number in signals:
        received += 1
        name = signal.Signals(number).name
        if received == 1:
            logger.info(
                "received %s: shutting down gracefully; running jobs have %g s "
                "to finish; send it again to stop at once",
                name,
                shutdown_timeout.total_seconds(),
            )
            nursery.start_soon(pulse.shutdown_graceful, shutdown_timeout)
        elif received == 2:
            logger.warning(
                "received %s again: cancelling running jobs now; they go back "
                "to pending. A handler running in a thread cannot be "
                "interrupted, so the worker waits for it to return; send the "
                "signal a third time to exit without waiting",
                name,
            )
            nursery.start_soon(pulse.shutdown_now)
        else:
            logger.error(
                "received %s a third time: exiting now without waiting for "
                "handler threads; jobs still running stay so until a queue "
                "on this database recovers them, which counts that run as an "
                "attempt",
                name,
            )
            logging.shutdown()
            # No cleanup: trio waits for handler threads, which cannot be
            # stopped, and the database is consistent after every commit.
            os._exit(EXIT_INTERRUPTED)


# -- exit status ----------------------------------------------------------


def exit_code_of(exc: BaseException) -> int | None:
    """Return the exit status that *exc* requests, or ``None`` if it is an error.

    A ``SystemExit`` or ``KeyboardInterrupt`` raised in a task leaves
    ``trio.run`` wrapped in exception groups, and would make Python exit
    with status 1. Here the first ``SystemExit`` found decides, then a
    ``KeyboardInterrupt`` gives 130, provided the group holds nothing else
    but cancellations.
    """
    leaves = list(_leaves(exc))
    if any(not isinstance(leaf, _CONTROL) for leaf in leaves):
        return None
    for leaf in leaves:
        if isinstance(leaf, SystemExit):
            return _system_exit_code(leaf)
    if any(isinstance(leaf, KeyboardInterrupt) for leaf in leaves):
        return EXIT_INTERRUPTED
    return None


_CONTROL = (SystemExit, KeyboardInterrupt, trio.Cancelled)


def queue_errors_of(exc: BaseException) -> list[PulseError]:
    """Return the errors of the queue in *exc*, or ``[]`` if it holds others.

    A :class:`PulseError` from ``run()``, such as a failed database or a
    queue that cannot run, explains itself, so the command line prints its
    message instead of a traceback.
    """
    leaves = [leaf for leaf in _leaves(exc) if not isinstance(leaf, trio.Cancelled)]
    if leaves and all(isinstance(leaf, PulseError) for leaf in leaves):
        return [leaf for leaf in leaves if isinstance(leaf, PulseError)]
    return []


def _leaves(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in _leaves(inner)]
    return [exc]


def _system_exit_code(exc: SystemExit) -> int:
    code = exc.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)  # as Python itself does for sys.exit("text")
    return 1
