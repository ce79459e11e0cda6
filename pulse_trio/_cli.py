"""The ``pulse-trio`` command line, also run as ``python -m pulse_trio``.

It uses only the public API. Every command but ``worker`` opens an existing
database file, never creates one, and closes it before it exits.

Exit status: 0 on success, 1 when the command fails (its message goes to
standard error), 2 for invalid arguments, 130 after Ctrl-C (except for
``stats --watch``, which Ctrl-C ends normally), and 141 when standard
output is a pipe that its reader closed, as a shell reports a process
that SIGPIPE ended.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import signal
import sys
import traceback
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from . import (
    DatabaseError,
    InvalidJobName,
    InvalidPayload,
    JobConfig,
    JobNotDead,
    JobNotFound,
    JobStatus,
    Pulse,
)
from . import _cli_format as fmt
from ._cli_values import (
    MAX_DURATION,
    CommandError,
    UsageError,
    int_parser,
    parse_app_path,
    parse_duration,
    parse_job_name,
    parse_max_retries,
    parse_payload,
    parse_priority,
    parse_time,
    parse_timeout,
    parse_watch_interval,
)
from ._cli_worker import (
    EXIT_INTERRUPTED,
    AppError,
    exit_code_of,
    load_app,
    queue_errors_of,
    serve,
)

PROGRAM = "pulse-trio"

EXIT_USAGE = 2
"""Exit status after invalid arguments, as argparse exits."""

EXIT_BROKEN_PIPE = 141
"""Exit status when standard output is a closed pipe: 128 + SIGPIPE, as a
shell reports a process that SIGPIPE ended."""

DEFAULT_SHUTDOWN_TIMEOUT = timedelta(seconds=30)
"""Grace period of ``worker`` for running jobs after the first stop signal."""

DEFAULT_WATCH_INTERVAL = 2.0
"""Seconds between two refreshes of ``stats --watch`` without a value."""

DEFAULT_LIST_LIMIT = 50
"""Jobs that ``jobs`` lists without ``--limit``."""

MAX_LIST_LIMIT = 1_000_000
"""Maximum of ``jobs --limit``, which bounds the memory that ``jobs`` uses."""

MAX_WORKERS = 10_000
"""Maximum of ``worker --workers``, equal to the maximum that
:meth:`Pulse.with_workers` accepts."""


LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

CLEAR_SCREEN = "\x1b[H\x1b[2J"

Command = Callable[[argparse.Namespace], Awaitable[int]]

Check = Callable[[argparse.Namespace], str | None]
"""A check of the arguments of one command, which returns an error message
or ``None``."""


# -- the parser -----------------------------------------------------------


class CommandParser(argparse.ArgumentParser):
    """The parser of one command.

    With *intermixed*, options may come before, between or after the
    positional arguments. Otherwise argparse gives an optional positional,
    such as the payload of ``enqueue``, its default as soon as an option
    follows the arguments before it. *check* tests combinations of
    arguments that argparse cannot express, and a failed check is a usage
    error.
    """

    def __init__(
        self,
        *args: Any,
        intermixed: bool = False,
        check: Check | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.intermixed = intermixed
        self.check = check
        self._in_intermixed_pass = False

    # One signature in place of the overloads of typeshed, which differ
    # only in the type of the namespace.
    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: Any = None
    ) -> tuple[Any, list[str]]:
        if self._in_intermixed_pass:
            # parse_known_intermixed_args() calls this method for each of
            # its two passes, one over the options and one over the rest.
            return super().parse_known_args(args, namespace)
        if self.intermixed:
            self._in_intermixed_pass = True
            try:
                namespace, extras = self.parse_known_intermixed_args(args, namespace)
            finally:
                self._in_intermixed_pass = False
        else:
            namespace, extras = super().parse_known_args(args, namespace)
        # Unknown arguments are reported first, by the top-level parser.
        if self.check is not None and not extras:
            problem = self.check(namespace)
            if problem is not None:
                self.error(problem)
        return namespace, extras


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command and option."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Run and inspect pulse-trio job queues on SQLite.",
    )
    parser.add_argument(
        "--version",
        action="version",
        version=f"{PROGRAM} {_installed_version()}",
        help="print the version of pulse-trio and exit",
    )
    commands = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="COMMAND",
        parser_class=CommandParser,
    )
    json_option = CommandParser(add_help=False)
    json_option.add_argument(
        "--json",
        action="store_true",
        help="print JSON for scripts instead of text (datetimes ISO 8601 UTC)",
    )
    database = CommandParser(add_help=False)
    database.add_argument("database", metavar="DB", help="path of the database file")
    _add_worker(commands)
    _add_stats(commands, [database, json_option])
    _add_jobs(commands, [database, json_option])
    _add_show(commands, [database, json_option])
    _add_retry(commands, [database, json_option])
    _add_enqueue(commands, [database, json_option])
    _add_purge(commands, [database, json_option])
    return parser


def _installed_version() -> str:
    try:
        return importlib.metadata.version("pulse-trio")
    except importlib.metadata.PackageNotFoundError:
        return "(version unknown: the package is not installed)"


# The type that add_subparsers() returns.
Subparsers = argparse._SubParsersAction


def _add_worker(commands: Subparsers[CommandParser]) -> None:
    worker = commands.add_parser(
        "worker",
        help="run an application's queue until SIGINT or SIGTERM",
        description=(
            "Import APP and run its queue. The first SIGINT or SIGTERM stops "
            "claiming jobs and gives running jobs the shutdown timeout to "
            "finish; a second signal cancels them at once. Cancelled jobs go "
            "back to pending. Exits 0 once the queue has stopped."
        ),
    )
    worker.add_argument(
        "app",
        metavar="APP",
        type=parse_app_path,
        help=(
            "MODULE:ATTRIBUTE naming a Pulse with its handlers, or a function "
            "(plain or async) that returns one, such as myapp.jobs:make_pulse"
        ),
    )
    worker.add_argument(
        "--app-dir",
        default=".",
        metavar="DIR",
        help="folder to import APP from, put first on sys.path (default: .)",
    )
    worker.add_argument(
        "--workers",
        type=int_parser(1, MAX_WORKERS),
        metavar="N",
        help=(
            f"jobs run at once, 1 to {MAX_WORKERS} (default: what APP set, else "
            "the CPU count)"
        ),
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=parse_duration,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help=(
            "seconds running jobs get to finish after the first stop signal, "
            "as a number or a duration such as 2m (default: 30, maximum: "
            f"{MAX_DURATION.days}d)"
        ),
    )
    worker.add_argument(
        "--log-level",
        type=str.lower,
        choices=LOG_LEVELS,
        default="info",
        help="lowest level of the log records written to stderr (default: info)",
    )
    worker.set_defaults(run=_worker)


def _add_stats(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    stats = commands.add_parser(
        "stats",
        parents=parents,
        help="show job counts, the oldest due job and recent failures",
        description=(
            "Show jobs by status and by priority, how long the oldest due job "
            "has waited, jobs completed and failed in the last minute and "
            "hour, and the number of dead jobs."
        ),
    )
    stats.add_argument(
        "--watch",
        nargs="?",
        type=parse_watch_interval,
        const=timedelta(seconds=DEFAULT_WATCH_INTERVAL),
        metavar="SECONDS",
        help=(
            "refresh every SECONDS, at least 0.1 (default: 2), until Ctrl-C; "
            "with --json, print one JSON object per line"
        ),
    )
    stats.set_defaults(run=_stats)


def _add_jobs(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    jobs = commands.add_parser(
        "jobs",
        parents=parents,
        help="list jobs, the newest first",
        description="List jobs, the newest first. Times are UTC.",
    )
    jobs.add_argument(
        "--status",
        type=str.lower,
        choices=[status.value for status in JobStatus],
        help="only jobs with this status",
    )
    jobs.add_argument("--name", help="only jobs with this name")
    jobs.add_argument(
        "--limit",
        type=int_parser(1, MAX_LIST_LIMIT),
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help=(
            f"list at most N jobs, 1 to {MAX_LIST_LIMIT} (default: "
            f"{DEFAULT_LIST_LIMIT})"
        ),
    )
    jobs.set_defaults(run=_jobs)


def _add_show(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    show = commands.add_parser(
        "show",
        parents=parents,
        help="show one job with its error history and tracebacks",
    )
    show.add_argument("job_id", metavar="ID", help="id of the job")
    show.set_defaults(run=_show)


def _add_retry(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    retry = commands.add_parser(
        "retry",
        parents=parents,
        check=_check_retry,
        help="make dead jobs pending again",
        description=(
            "Make dead jobs pending again, with attempts reset to 0; they keep "
            "their payload, config and error history. Give job ids, or "
            "--all-dead."
        ),
    )
    retry.add_argument("job_ids", metavar="ID", nargs="*", help="ids of dead jobs")
    retry.add_argument("--all-dead", action="store_true", help="retry every dead job")
    retry.add_argument(
        "--name", help="with --all-dead, retry only the dead jobs with this name"
    )
    retry.set_defaults(run=_retry)


def _check_retry(args: argparse.Namespace) -> str | None:
    if args.job_ids and args.all_dead:
        return "give job ids or --all-dead, not both"
    if args.name is not None and not args.all_dead:
        return "--name needs --all-dead, so add --all-dead or drop --name"
    if not args.job_ids and not args.all_dead:
        return "give the ids of dead jobs to retry, or --all-dead"
    return None


def _add_enqueue(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    enqueue = commands.add_parser(
        "enqueue",
        parents=parents,
        intermixed=True,
        check=_check_enqueue,
        help="store a job, due now or later",
        description=(
            "Store a job and print its id. Options may come before or after "
            "NAME and JSON."
        ),
    )
    enqueue.add_argument(
        "name",
        metavar="NAME",
        type=parse_job_name,
        help="job name, as handled by a worker",
    )
    enqueue.add_argument(
        "payload",
        metavar="JSON",
        nargs="?",
        type=parse_payload,
        default=None,
        help="payload as JSON text, such as '{\"user\": 42}' (default: null)",
    )
    enqueue.add_argument(
        "--priority",
        type=parse_priority,
        default=None,
        metavar="P",
        help="low, normal, high or critical, or 0 to 3 (default: normal)",
    )
    when = enqueue.add_mutually_exclusive_group()
    when.add_argument(
        "--at",
        type=parse_time,
        metavar="TIME",
        help="due time, ISO 8601 with a UTC offset, such as 2030-06-01T09:00:00Z",
    )
    when.add_argument(
        "--in",
        dest="delay",
        type=parse_duration,
        metavar="DURATION",
        help="due after this long, such as 30s, 5m, 2h, 7d or 1h30m",
    )
    _add_config_options(enqueue)
    enqueue.set_defaults(run=_enqueue)


def _add_config_options(enqueue: argparse.ArgumentParser) -> None:
    defaults = JobConfig()
    enqueue.add_argument(
        "--max-retries",
        type=parse_max_retries,
        metavar="N",
        help=(
            "retries after the first failed run, so the job runs at most N + 1 "
            f"times (default: {defaults.max_retries})"
        ),
    )
    enqueue.add_argument(
        "--retry-delay",
        type=parse_duration,
        metavar="DURATION",
        help=(
            "delay before the first retry, doubled after each further failed "
            f"run (default: {fmt.human_duration(defaults.retry_delay)})"
        ),
    )
    enqueue.add_argument(
        "--max-retry-delay",
        type=parse_duration,
        metavar="DURATION",
        help=(
            "longest delay between two runs, at least --retry-delay "
            f"(default: {fmt.human_duration(defaults.max_retry_delay)})"
        ),
    )
    limit = enqueue.add_mutually_exclusive_group()
    limit.add_argument(
        "--timeout",
        type=parse_timeout,
        metavar="DURATION",
        help=(
            "time limit of one run, after which the run fails "
            f"(default: {fmt.human_duration(defaults.timeout)})"
        ),
    )
    limit.add_argument(
        "--no-timeout",
        action="store_true",
        help="let each run take as long as it needs",
    )


def _check_enqueue(args: argparse.Namespace) -> str | None:
    # JobConfig accepts a retry delay over the max retry delay and caps it
    # silently, which would make --retry-delay 2h wait only 1h.
    defaults = JobConfig()
    retry_delay = args.retry_delay
    if retry_delay is None:
        retry_delay = defaults.retry_delay
    max_retry_delay = args.max_retry_delay
    if max_retry_delay is None:
        max_retry_delay = defaults.max_retry_delay
    if retry_delay > max_retry_delay:
        return (
            f"--retry-delay {fmt.human_duration(retry_delay)} is longer than the "
            f"max retry delay {fmt.human_duration(max_retry_delay)}, which caps "
            "every delay, so also pass --max-retry-delay "
            f"{fmt.human_duration(retry_delay)} or more"
        )
    return None


def _add_purge(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    purge = commands.add_parser(
        "purge",
        parents=parents,
        help="delete completed or dead jobs that finished long enough ago",
    )
    purge.add_argument(
        "--status",
        type=str.lower,
        choices=["completed", "dead"],
        required=True,
        help="delete jobs with this status",
    )
    purge.add_argument(
        "--older-than",
        type=parse_duration,
        required=True,
        metavar="DURATION",
        help="delete only jobs that finished longer ago than this, such as 7d",
    )
    purge.add_argument(
        "--dry-run",
        action="store_true",
        help="count the jobs that would be deleted, and delete none",
    )
    purge.set_defaults(run=_purge)


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
    run: Command = args.run
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
        _print(fmt.render_job(job))
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


# -- enqueue --------------------------------------------------------------


async def _enqueue(args: argparse.Namespace) -> int:
    config = _job_config(args)
    pulse = await _open(args.database)
    try:
        job_id = await _store_job(pulse, args, config)
        job = await pulse.status(job_id)
    finally:
        pulse.close()
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
