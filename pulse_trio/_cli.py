"""The ``pulse-trio`` command line, also run as ``python -m pulse_trio``.

It uses only the public API. Every command but ``worker`` opens an existing
database file, never creates one, and closes it before it exits.

Exit status: 0 on success, 1 when the command fails (its message goes to
standard error), 2 for invalid arguments, 130 after Ctrl-C (except for
``stats --watch``, which Ctrl-C ends normally).
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import traceback
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import trio

from . import _cli_format as fmt
from ._cli_values import (
    CommandError,
    parse_app_path,
    parse_duration,
    parse_payload,
    parse_positive_int,
    parse_priority,
    parse_time,
)
from ._cli_worker import (
    EXIT_INTERRUPTED,
    AppError,
    exit_code_of,
    load_app,
    queue_errors_of,
    serve,
)
from ._config import JobConfig
from ._errors import DatabaseError, JobNotDead, JobNotFound
from ._job import JobStatus
from ._pulse import Pulse

PROGRAM = "pulse-trio"

DEFAULT_SHUTDOWN_TIMEOUT = timedelta(seconds=30)
"""Grace period of ``worker`` for running jobs after the first stop signal."""

DEFAULT_WATCH_INTERVAL = 2.0
"""Seconds between two refreshes of ``stats --watch`` without a value."""

DEFAULT_LIST_LIMIT = 50
"""Jobs that ``jobs`` lists without ``--limit``."""

LOG_LEVELS = ("debug", "info", "warning", "error", "critical")

CLEAR_SCREEN = "\x1b[H\x1b[2J"

Command = Callable[[argparse.Namespace], Awaitable[int]]


# -- the parser -----------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """Return the parser of every command and option."""
    parser = argparse.ArgumentParser(
        prog=PROGRAM,
        description="Run and inspect pulse-trio job queues on SQLite.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    json_option = argparse.ArgumentParser(add_help=False)
    json_option.add_argument(
        "--json",
        action="store_true",
        help="print JSON for scripts instead of text (datetimes ISO 8601 UTC)",
    )
    database = argparse.ArgumentParser(add_help=False)
    database.add_argument("database", metavar="DB", help="path of the database file")
    _add_worker(commands)
    _add_stats(commands, [database, json_option])
    _add_jobs(commands, [database, json_option])
    _add_show(commands, [database, json_option])
    _add_retry(commands, [database, json_option])
    _add_enqueue(commands, [database, json_option])
    _add_purge(commands, [database, json_option])
    return parser


# The type that add_subparsers() returns.
Subparsers = argparse._SubParsersAction


def _add_worker(commands: Subparsers[argparse.ArgumentParser]) -> None:
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
        type=parse_positive_int,
        metavar="N",
        help="jobs run at once (default: what APP set, else the CPU count)",
    )
    worker.add_argument(
        "--shutdown-timeout",
        type=parse_duration,
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metavar="SECONDS",
        help=(
            "seconds running jobs get to finish after the first stop signal, "
            "as a number or a duration such as 2m (default: 30)"
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
    commands: Subparsers[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
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
        type=parse_duration,
        const=timedelta(seconds=DEFAULT_WATCH_INTERVAL),
        metavar="SECONDS",
        help=(
            "refresh every SECONDS (default: 2) until Ctrl-C; with --json, "
            "print one JSON object per line"
        ),
    )
    stats.set_defaults(run=_stats)


def _add_jobs(
    commands: Subparsers[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
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
        type=parse_positive_int,
        default=DEFAULT_LIST_LIMIT,
        metavar="N",
        help=f"list at most N jobs (default: {DEFAULT_LIST_LIMIT})",
    )
    jobs.set_defaults(run=_jobs)


def _add_show(
    commands: Subparsers[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    show = commands.add_parser(
        "show",
        parents=parents,
        help="show one job with its error history and tracebacks",
    )
    show.add_argument("job_id", metavar="ID", help="id of the job")
    show.set_defaults(run=_show)


def _add_retry(
    commands: Subparsers[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    retry = commands.add_parser(
        "retry",
        parents=parents,
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


def _add_enqueue(
    commands: Subparsers[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
) -> None:
    enqueue = commands.add_parser(
        "enqueue",
        parents=parents,
        help="store a job, due now or later",
    )
    enqueue.add_argument(
        "name", metavar="NAME", help="job name, as handled by a worker"
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
    enqueue.set_defaults(run=_enqueue)


def _add_purge(
    commands: Subparsers[argparse.ArgumentParser],
    parents: list[argparse.ArgumentParser],
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
        return exc.code if isinstance(exc.code, int) else 2
    run: Command = args.run
    try:
        return trio.run(run, args)
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
        errors = queue_errors_of(exc)
        if not errors:
            raise
        for error in errors:
            _print_error(str(error))
        return 1


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
    clear = not as_json and sys.stdout.isatty()
    with trio.open_signal_receiver(signal.SIGINT) as interrupts:
        while True:
            text = await _stats_text(pulse, as_json, compact=True)
            if clear:
                text = CLEAR_SCREEN + text
            elif not as_json:
                text += "\n"
            _print(text)
            with trio.move_on_after(interval):
                async for _ in interrupts:
                    return


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
        _print(f"(the newest {args.limit} shown; pass --limit to see more)")
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
    if args.all_dead == bool(args.job_ids):
        raise CommandError("give the ids of dead jobs to retry, or --all-dead")
    if args.name is not None and not args.all_dead:
        raise CommandError(
            "--name is valid only with --all-dead, so add --all-dead or drop --name"
        )
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
        _print(f"retried {retried} dead jobs{named}")
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
    config = None if args.priority is None else JobConfig(priority=args.priority)
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
    except (ValueError, TypeError) as exc:
        # InvalidJobName, InvalidPayload and out-of-range times land here.
        raise CommandError(str(exc)) from None


# -- purge ----------------------------------------------------------------


async def _purge(args: argparse.Namespace) -> int:
    status = JobStatus(args.status)
    pulse = await _open(args.database)
    try:
        deleted = await pulse.purge(status, older_than=args.older_than)
    finally:
        pulse.close()
    if args.json:
        _print(fmt.dumps({"deleted": deleted}))
    else:
        _print(
            f"deleted {deleted} {status.value} jobs that finished more than "
            f"{fmt.human_duration(args.older_than)} ago"
        )
    return 0
