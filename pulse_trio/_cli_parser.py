"""The parser of the ``pulse-trio`` command line: its commands and options.

Each command's name is ``args.command``, and :mod:`pulse_trio._cli` runs
the function that implements it. Checks of argument combinations that
argparse cannot express run while parsing, so they are usage errors.
"""

from __future__ import annotations

import argparse
import importlib.metadata
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from . import JobConfig, JobStatus
from . import _cli_format as fmt
from ._cli_values import (
    MAX_DURATION,
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

PROGRAM = "pulse-trio"

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
        # Reported here rather than by the top-level parser, so that the
        # message comes with this command's usage.
        if extras:
            self.error(f"unrecognized arguments: {' '.join(extras)}")
        if self.check is not None:
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
    _add_delete(commands, [database, json_option])
    _add_recover(commands, [database, json_option])
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
            "back to pending. Exits 0 once the queue has stopped. Handlers "
            "running in threads cannot be cancelled: a third signal exits "
            "with 130 without waiting for them."
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


def _add_stats(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    stats = commands.add_parser(
        "stats",
        parents=parents,
        help="show job counts, due jobs by name, queues and recent failures",
        description=(
            "Show jobs by status and by priority, due jobs by name, how long "
            "the oldest due job has waited, jobs completed and failed in the "
            "last minute and hour, the number of dead jobs, and the queues "
            "recorded in the database with the job names they handle."
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


def _check_retry(args: argparse.Namespace) -> str | None:
    if args.job_ids and args.all_dead:
        return "give job ids or --all-dead, not both"
    if args.name is not None and not args.all_dead:
        return "--name needs --all-dead, so add --all-dead or drop --name"
    if not args.job_ids and not args.all_dead:
        return "give the ids of dead jobs to retry, or --all-dead"
    return None


def _add_delete(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    delete = commands.add_parser(
        "delete",
        parents=parents,
        check=_check_delete,
        help="delete jobs that are not running",
        description=(
            "Delete jobs by id, or every job with a --name, a --status or "
            "both; running jobs are never deleted. A pending, scheduled or "
            "retrying job then never runs. An unknown id or a running job is "
            "reported and the other ids are still deleted, but the exit "
            "status is then 1."
        ),
    )
    delete.add_argument(
        "job_ids", metavar="ID", nargs="*", help="ids of the jobs to delete"
    )
    delete.add_argument("--name", help="delete every job with this name")
    delete.add_argument(
        "--status",
        type=str.lower,
        choices=[s.value for s in JobStatus if s is not JobStatus.RUNNING],
        help="delete every job with this status",
    )
    delete.add_argument(
        "--dry-run",
        action="store_true",
        help="with --name or --status, count the jobs and delete none",
    )


def _check_delete(args: argparse.Namespace) -> str | None:
    filters = args.name is not None or args.status is not None
    if args.job_ids and filters:
        return "give job ids or --name/--status, not both"
    if not args.job_ids and not filters:
        return "give the ids of the jobs to delete, or --name, --status or both"
    if args.dry_run and not filters:
        return "--dry-run works with --name or --status, so add one or drop it"
    return None


def _add_recover(
    commands: Subparsers[CommandParser],
    parents: list[CommandParser],
) -> None:
    commands.add_parser(
        "recover",
        parents=parents,
        help="put back the running jobs of dead queues",
        description=(
            "Put back the running jobs of queues that are dead: on this host "
            "when their process is gone, elsewhere when their lease has "
            "expired. Each job is due again, or dead if that run was its "
            "last attempt. Running queues do this by themselves; this serves "
            "a database on which no queue runs, such as after a worker was "
            "killed."
        ),
    )


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
