"""The ``pulse-trio`` command line, also run as ``python -m pulse_trio``.

It uses only the public API. Every command but ``worker`` opens an existing
database file, never creates one, and closes it before it exits.

Exit status: 0 on success, 1 when the command fails (its message goes to
standard error) or, for ``retry`` and ``delete``, when any of their ids
failed, 2 for invalid arguments, 130 after Ctrl-C (except for
``stats --watch``, which Ctrl-C ends normally), and 141 when standard
output is a pipe that its reader closed, as a shell reports a process
that SIGPIPE ended.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import trio

from . import (
    DatabaseError,
    InvalidJobName,
    InvalidPayload,
    Job,
    JobConfig,
    JobNotDead,
    JobNotFound,
    JobRunning,
    JobStatus,
    Pulse,
)
from . import _cli_format as fmt
from ._cli_parser import PROGRAM, build_parser
from ._cli_values import CommandError, UsageError
from ._cli_worker import (
    EXIT_INTERRUPTED,
    AppError,
    exit_code_of,
    load_app,
    queue_errors_of,
    serve,
)

EXIT_USAGE = 2
"""Exit status after invalid arguments, as argparse exits."""

EXIT_BROKEN_PIPE = 141
"""Exit status when standard output is a closed pipe: 128 + SIGPIPE, as a
shell reports a process that SIGPIPE ended."""

CLEAR_SCREEN = "\x1b[H\x1b[2J"

Command = Callable[[argparse.Namespace], Awaitable[int]]


# -- running a command ----------------------------------------------------


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line with *argv* (default ``sys.argv[1:]``).

    Returns the exit status.
    """
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits after --help or a usage error
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    library_logger = logging.getLogger("pulse_trio")
    quiet = logging.NullHandler()
    if args.command != "worker":
        # These commands print what happened to each job themselves, so the
        # library's log records would only repeat it, through Python's
        # last-resort handler, without this program's prefix.
        library_logger.addHandler(quiet)
    try:
        return _run_command(COMMANDS[args.command], args)
    finally:
        library_logger.removeHandler(quiet)


def _run_command(run: Command, args: argparse.Namespace) -> int:
    """Run one command and return its exit status, printing its errors."""
    try:
        return trio.run(run, args)
    except UsageError as exc:
        _print_error(str(exc))
        return EXIT_USAGE
    except CommandError as exc:
        _print_error(str(exc))
        return 1
    except AppError as exc:
        _print_error(f"{exc}:")
        cause = exc.__cause__
        if cause is not None:
            traceback.print_exception(cause, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        _print_error("interrupted")
        return EXIT_INTERRUPTED
    except BaseException as exc:
        code = exit_code_of(exc)
        if code is not None:
            return code
        if _is_broken_pipe(exc):
            return _exit_on_broken_pipe()
        errors = queue_errors_of(exc)
        if not errors:
            raise
        for error in errors:
            _print_error(str(error))
        return 1


def _is_broken_pipe(exc: BaseException) -> bool:
    """Tell whether *exc* is a BrokenPipeError, alone or in exception groups
    beside cancellations."""
    if isinstance(exc, BaseExceptionGroup):
        _, others = exc.split((BrokenPipeError, trio.Cancelled))
        return others is None and exc.subgroup(BrokenPipeError) is not None
    return isinstance(exc, BrokenPipeError)


def _exit_on_broken_pipe() -> int:
    """Return the exit status after the reader of standard output went away.

    Python flushes standard output again when it exits, which would fail
    on the closed pipe with a warning on standard error. Pointing the file
    descriptor at the null device first makes that flush succeed.
    """
    try:
        descriptor = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return EXIT_BROKEN_PIPE  # not a file, as under pytest's capture
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, descriptor)
    finally:
        os.close(null)
    return EXIT_BROKEN_PIPE


def _print_error(message: str) -> None:
    print(f"{PROGRAM}: error: {message}", file=sys.stderr)


def _print(text: str) -> None:
    print(text, flush=True)


async def _open(database: str) -> Pulse:
    """Open an existing database file, refusing to create one."""
    path = _existing_file(database)
    try:
        return await Pulse.new(path, workers=1, create=False)
    except DatabaseError as exc:
        raise CommandError(str(exc)) from None


def _existing_file(database: str) -> Path:
    # A stat() of a local file is fast enough to make on the event loop.
    path = Path(database)
    if not path.exists():
        raise CommandError(
            f"no database file at {database!r}; check the path (a worker creates "
            "the file when it first opens it)"
        )
    if not path.is_file():
        raise CommandError(f"{database!r} is not a file; pass a database file")
    return path


# -- worker ---------------------------------------------------------------


async def _worker(args: argparse.Namespace) -> int:
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    pulse = await load_app(args.app, args.app_dir)
    if args.workers is not None:
        pulse.with_workers(args.workers)
    await serve(pulse, args.shutdown_timeout)
    return 0


# -- stats ----------------------------------------------------------------


async def _stats(args: argparse.Namespace) -> int:
    pulse = await _open(args.database)
    try:
        if args.watch is None:
            _print(await _stats_text(pulse, args.json, compact=False))
        else:
            await _watch_stats(pulse, args.json, args.watch.total_seconds())
    finally:
        pulse.close()
    return 0


async def _stats_text(pulse: Pulse, as_json: bool, *, compact: bool) -> str:
    summary = await pulse.summary()
    now = datetime.now(UTC)
    if as_json:
        return fmt.dumps(
            fmt.summary_record(summary, pulse.database, now), compact=compact
        )
    return fmt.render_summary(summary, pulse.database, now)


async def _watch_stats(pulse: Pulse, as_json: bool, interval: float) -> None:
    # A task of its own waits for SIGINT and cancels the refreshes, so that
    # Ctrl-C ends the watch at the next checkpoint, wherever the loop is.
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(_cancel_on_signal, interrupts, nursery.cancel_scope)
            await _refresh_stats(pulse, as_json, interval)


async def _cancel_on_signal(
    signals: AsyncIterator[int], scope: trio.CancelScope
) -> None:
    async for _ in signals:
        scope.cancel()
        return


async def _refresh_stats(pulse: Pulse, as_json: bool, interval: float) -> None:
    clear = not as_json and sys.stdout.isatty()
    while True:
        text = await _stats_text(pulse, as_json, compact=True)
        if clear:
            text = CLEAR_SCREEN + text
        elif not as_json:
            text += "\n"
        _print(text)
        await trio.sleep(interval)


# -- jobs and show --------------------------------------------------------


async def _jobs(args: argparse.Namespace) -> int:
    status = None if args.status is None else JobStatus(args.status)
    pulse = await _open(args.database)
    try:
        # Reading one job more than the limit shows whether the list was cut.
        jobs = await pulse.list_jobs(
            status=status, name=args.name, limit=args.limit + 1
        )
    finally:
        pulse.close()
    shown = jobs[: args.limit]
    if args.json:
        _print(fmt.dumps([fmt.job_record(job, with_errors=False) for job in shown]))
        return 0
    if not shown:
        _print("no jobs match")
        return 0
    _print(fmt.render_jobs(shown))
    if len(jobs) > args.limit:
        shown_jobs = "job is" if args.limit == 1 else f"{args.limit} jobs are"
        _print(
            f"(only the newest {shown_jobs} shown, so pass a larger --limit to "
            "see more)"
        )
    return 0


async def _show(args: argparse.Namespace) -> int:
    pulse = await _open(args.database)
    try:
        job = await pulse.status(args.job_id)
        runner = None
        if job.owner is not None:
            queues = (await pulse.summary()).queues
            runner = next((queue for queue in queues if queue.id == job.owner), None)
    except JobNotFound:
        raise CommandError(
            f"no job with id {args.job_id!r} in {args.database!r}; list ids with "
            f"'{PROGRAM} jobs {args.database}'"
        ) from None
    finally:
        pulse.close()
    if args.json:
        _print(fmt.dumps(fmt.job_record(job, with_errors=True)))
    else:
        _print(fmt.render_job(job, runner))
    return 0


# -- retry ----------------------------------------------------------------


async def _retry(args: argparse.Namespace) -> int:
    # _check_retry() has checked the combination of arguments.
    pulse = await _open(args.database)
    try:
        if args.all_dead:
            return await _retry_all(pulse, args)
        return await _retry_ids(pulse, args)
    finally:
        pulse.close()


async def _retry_all(pulse: Pulse, args: argparse.Namespace) -> int:
    retried = await pulse.retry_all_dead(name=args.name)
    if args.json:
        _print(fmt.dumps({"retried": retried}))
    else:
        named = "" if args.name is None else f" named {args.name!r}"
        _print(f"retried {fmt.count_of(retried, 'dead job')}{named}")
    return 0


async def _retry_ids(pulse: Pulse, args: argparse.Namespace) -> int:
    retried: list[str] = []
    failed = 0
    for job_id in args.job_ids:
        try:
            await pulse.retry(job_id)
        except JobNotFound:
            _print_error(f"no job with id {job_id!r} in {args.database!r}")
            failed += 1
        except JobNotDead as exc:
            _print_error(f"job {job_id!r} is {exc.status}, not dead; not retried")
            failed += 1
        else:
            retried.append(job_id)
            if not args.json:
                _print(f"retried job {job_id}")
    if args.json:
        _print(fmt.dumps({"retried": len(retried), "ids": retried}))
    return 1 if failed else 0


# -- delete ---------------------------------------------------------------

DELETABLE_STATUSES = [
    status.value for status in JobStatus if status is not JobStatus.RUNNING
]
"""The statuses that ``delete --dry-run`` counts separately, in order."""


async def _delete(args: argparse.Namespace) -> int:
    pulse = await _open(args.database)
    try:
        if args.job_ids:
            return await _delete_ids(pulse, args)
        try:
            if args.dry_run:
                return await _count_deletable(pulse, args)
            count = await pulse.delete_all(name=args.name, status=args.status)
        except InvalidJobName as exc:
            raise UsageError(f"invalid --name: {exc}") from None
    finally:
        pulse.close()
    if args.json:
        _print(fmt.dumps({"deleted": count}))
    else:
        _print(f"deleted {_described_jobs(count, args)}")
    return 0


async def _count_deletable(pulse: Pulse, args: argparse.Namespace) -> int:
    """Print how many jobs ``delete`` would delete, by status."""
    statuses = [args.status] if args.status else DELETABLE_STATUSES
    by_status: dict[str, int] = {}
    for status in statuses:
        by_status[status] = await pulse.delete_all(
            name=args.name, status=status, dry_run=True
        )
    count = sum(by_status.values())
    if args.json:
        _print(fmt.dumps({"would_delete": count, "by_status": by_status}))
        return 0
    counts = ", ".join(f"{n} {status}" for status, n in by_status.items() if n)
    _print(
        f"would delete {_described_jobs(count, args)}"
        + (f": {counts}" if counts and not args.status else "")
        + " (dry run)"
    )
    return 0


def _described_jobs(count: int, args: argparse.Namespace) -> str:
    jobs = fmt.count_of(count, f"{args.status} job" if args.status else "job")
    if args.name is not None:
        jobs += f" named {args.name!r}"
    return jobs


async def _delete_ids(pulse: Pulse, args: argparse.Namespace) -> int:
    deleted: list[Job] = []
    failed = 0
    for job_id in args.job_ids:
        job = await _delete_job(pulse, job_id, args.database)
        if job is None:
            failed += 1
            continue
        deleted.append(job)
        if not args.json:
            _print(f"deleted job {job.id} ({job.name})")
    if args.json:
        _print(fmt.dumps([fmt.job_record(job, with_errors=False) for job in deleted]))
    return 1 if failed else 0


async def _delete_job(pulse: Pulse, job_id: str, database: str) -> Job | None:
    """Delete one job and return its last snapshot, or print why it was not
    deleted and return ``None``."""
    try:
        job = await pulse.status(job_id)
        await pulse.delete(job_id)
    except JobNotFound:
        _print_error(f"no job with id {job_id!r} in {database!r}")
        return None
    except JobRunning:
        # Only delete() raises it, so status() has set job.
        _print_error(
            f"job {job_id!r} ({job.name}) is running, so it was not deleted. "
            "Delete it once its run ends, or stop the worker that runs it; if "
            f"that worker is dead, '{PROGRAM} recover {database}' puts the job "
            "back first"
        )
        return None
    return job


# -- enqueue --------------------------------------------------------------


async def _enqueue(args: argparse.Namespace) -> int:
    config = _job_config(args)
    pulse = await _open(args.database)
    try:
        job_id = await _store_job(pulse, args, config)
        job = await pulse.status(job_id)
        queues = [queue for queue in (await pulse.summary()).queues if queue.alive]
    finally:
        pulse.close()
    if queues and not any(args.name in queue.handles for queue in queues):
        # Stored all the same: a worker with that handler may start later.
        _print_error(
            f"warning: no running queue handles jobs named {args.name!r}; the "
            "job waits until one does (check the name for a typo)"
        )
    if args.json:
        _print(fmt.dumps(fmt.job_record(job, with_errors=False)))
    else:
        _print(
            f"enqueued job {job.id} ({job.name}), {job.status.value}, due at "
            f"{fmt.human_time(job.run_at)} UTC"
        )
    return 0


def _job_config(args: argparse.Namespace) -> JobConfig | None:
    """Return the config that the options of ``enqueue`` set, or ``None``
    for the default."""
    options: dict[str, Any] = {}
    for field in ("priority", "max_retries", "retry_delay", "max_retry_delay"):
        value = getattr(args, field)
        if value is not None:
            options[field] = value
    if args.no_timeout:
        options["timeout"] = None
    elif args.timeout is not None:
        options["timeout"] = args.timeout
    return JobConfig(**options) if options else None


async def _store_job(
    pulse: Pulse, args: argparse.Namespace, config: JobConfig | None
) -> str:
    try:
        if args.at is not None:
            return await pulse.schedule(args.name, args.payload, args.at, config=config)
        if args.delay is not None:
            return await pulse.schedule(
                args.name, args.payload, delay=args.delay, config=config
            )
        return await pulse.enqueue_with_config(args.name, args.payload, config)
    except (InvalidJobName, InvalidPayload) as exc:
        # The queue checks some rules itself, such as the maximum length of
        # a name and size of a payload, so these arguments fail only here.
        raise UsageError(str(exc)) from None
    except (ValueError, TypeError) as exc:
        raise CommandError(str(exc)) from None


# -- recover --------------------------------------------------------------


async def _recover(args: argparse.Namespace) -> int:
    pulse = await _open(args.database)
    try:
        recovered = await pulse.recover()
        jobs = [await pulse.status(job_id) for job_id in recovered]
    finally:
        pulse.close()
    if args.json:
        _print(fmt.dumps([fmt.job_record(job, with_errors=False) for job in jobs]))
        return 0
    for job in jobs:
        _print(f"recovered job {job.id} ({job.name}), now {job.status.value}")
    _print(f"recovered {fmt.count_of(len(jobs), 'job')} of dead queues")
    return 0


# -- purge ----------------------------------------------------------------


async def _purge(args: argparse.Namespace) -> int:
    status = JobStatus(args.status)
    pulse = await _open(args.database)
    try:
        count = await pulse.purge(
            status, older_than=args.older_than, dry_run=args.dry_run
        )
    finally:
        pulse.close()
    if args.json:
        key = "would_delete" if args.dry_run else "deleted"
        _print(fmt.dumps({key: count}))
        return 0
    jobs = fmt.count_of(count, f"{status.value} job")
    age = fmt.human_duration(args.older_than)
    if args.dry_run:
        _print(f"would delete {jobs} that finished more than {age} ago (dry run)")
    else:
        _print(f"deleted {jobs} that finished more than {age} ago")
    return 0


# -- dispatch -------------------------------------------------------------

COMMANDS: dict[str, Command] = {
    "worker": _worker,
    "stats": _stats,
    "jobs": _jobs,
    "show": _show,
    "retry": _retry,
    "delete": _delete,
    "recover": _recover,
    "enqueue": _enqueue,
    "purge": _purge,
}
"""The function that runs each command of :func:`build_parser`, by name."""
