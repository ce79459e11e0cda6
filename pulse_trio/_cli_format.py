"""Output of the command line: JSON records and human-readable tables.

The JSON keys are part of the command line's interface, so scripts can
rely on them: add keys, never rename or drop one. Datetimes are ISO 8601
in UTC with microseconds, and durations are seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from . import Job, JobStatus, QueueInfo, QueueSummary

MAX_ERROR_COLUMN = 60
"""Characters of the last error shown in a row of ``jobs``; more are cut."""

MAX_DUE_NAMES = 10
"""Maximum of job names that ``stats`` lists, those with the most due jobs.
``--json`` lists every name."""

UNHANDLED_MARK = "*"
"""Mark of a name in the ``stats`` table of due jobs that no live queue handles."""


# -- values ---------------------------------------------------------------


def iso_time(moment: datetime | None) -> str | None:
    """Return *moment* as ISO 8601 in UTC with microseconds, or ``None``."""
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def human_time(moment: datetime | None) -> str:
    """Return *moment* in UTC to the second, or ``-``."""
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")


def total_seconds(duration: timedelta | None) -> float | None:
    return None if duration is None else duration.total_seconds()


def human_duration(duration: timedelta | float | None) -> str:
    """Return a duration as ``1d2h``, ``3m12s`` or ``0.4s``; ``none`` if None."""
    if duration is None:
        return "none"
    seconds = duration.total_seconds() if isinstance(duration, timedelta) else duration
    if seconds < 60 and seconds != int(seconds):
        return f"{seconds:.1f}s"
    remaining = int(seconds)
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        count, remaining = divmod(remaining, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts) or "0s"


def count_of(count: int, noun: str) -> str:
    """Return ``1 job`` or ``2 jobs``: *count* and *noun*, plural unless 1."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def dumps(value: Any, *, compact: bool = False) -> str:
    """Encode *value* as JSON: indented, or on one line if *compact*."""
    if compact:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value, ensure_ascii=False, indent=2)


# -- JSON records ---------------------------------------------------------


def job_record(job: Job, *, with_errors: bool) -> dict[str, Any]:
    """Return the JSON record of *job*; *with_errors* adds its error history."""
    config = job.config
    record: dict[str, Any] = {
        "id": job.id,
        "name": job.name,
        "status": job.status.value,
        "priority": job.priority.name.lower(),
        "attempts": job.attempts,
        "max_retries": job.max_retries,
        "payload": job.payload,
        "last_error": job.last_error,
        "created_at": iso_time(job.created_at),
        "run_at": iso_time(job.run_at),
        "started_at": iso_time(job.started_at),
        "finished_at": iso_time(job.finished_at),
        "owner": job.owner,
        "config": {
            "priority": config.priority.name.lower(),
            "max_retries": config.max_retries,
            "retry_delay": total_seconds(config.retry_delay),
            "max_retry_delay": total_seconds(config.max_retry_delay),
            "timeout": total_seconds(config.timeout),
        },
    }
    if with_errors:
        record["errors"] = [
            {
                "attempt": error.attempt,
                "error": error.error,
                "traceback": error.traceback,
                "failed_at": iso_time(error.failed_at),
            }
            for error in job.errors
        ]
    return record


def summary_record(
    summary: QueueSummary, database: str, now: datetime
) -> dict[str, Any]:
    """Return the JSON record of ``stats`` for *summary*, read at *now*."""
    oldest = summary.oldest_due_at
    return {
        "database": database,
        "at": iso_time(now),
        "by_status": {
            status.value: summary.by_status.get(status, 0) for status in JobStatus
        },
        "waiting_by_priority": {
            priority.name.lower(): jobs
            for priority, jobs in sorted(summary.waiting_by_priority.items())
        },
        "oldest_due_at": iso_time(oldest),
        "oldest_due_age": None if oldest is None else _age(oldest, now),
        "completed_last_minute": summary.completed_last_minute,
        "completed_last_hour": summary.completed_last_hour,
        "failed_last_minute": summary.failed_last_minute,
        "failed_last_hour": summary.failed_last_hour,
        "dead": summary.by_status.get(JobStatus.DEAD, 0),
        "due_by_name": dict(summary.due_by_name),
        "unhandled_names": summary.unhandled_names,
        "queues": [queue_record(queue) for queue in summary.queues],
    }


def queue_record(queue: QueueInfo) -> dict[str, Any]:
    """Return the JSON record of one queue recorded in the database."""
    return {
        "id": queue.id,
        "host": queue.host,
        "pid": queue.pid,
        "started_at": iso_time(queue.started_at),
        "lease_until": iso_time(queue.lease_until),
        "alive": queue.alive,
        "handles": sorted(queue.handles),
        "running": queue.running,
    }


def _age(moment: datetime, now: datetime) -> float:
    return max((now - moment).total_seconds(), 0.0)


# -- human output ---------------------------------------------------------


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Return *rows* under *headers* in left-aligned columns."""
    widths = [len(header) for header in headers]
    for row in rows:
        widths = [
            max(width, len(cell)) for width, cell in zip(widths, row, strict=True)
        ]
    lines = [
        "  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
        for line in [headers, *rows]
    ]
    return "\n".join(line.rstrip() for line in lines)


def render_jobs(jobs: Sequence[Job]) -> str:
    """Return the ``jobs`` table, with times in UTC.

    When any job is running, an OWNER column gives the queue that runs
    each running job."""
    with_owner = any(job.owner is not None for job in jobs)
    rows = [
        [
            job.id,
            job.name,
            job.status.value,
            job.priority.name.lower(),
            f"{job.attempts}/{job.max_retries + 1}",
            human_time(job.run_at),
            *([job.owner or "-"] if with_owner else []),
            _cut(job.last_error or "", MAX_ERROR_COLUMN),
        ]
        for job in jobs
    ]
    headers = ["ID", "NAME", "STATUS", "PRIORITY", "RUNS", "RUN AT (UTC)"]
    headers += ["OWNER"] if with_owner else []
    return render_table([*headers, "LAST ERROR"], rows)


def _describe_runner(owner: str, runner: QueueInfo | None) -> str:
    if runner is None:
        return f"queue {owner}, no longer recorded, so 'recover' puts the job back"
    state = "alive" if runner.alive else "dead, so 'recover' puts the job back"
    return f"queue {owner} (host {runner.host}, pid {runner.pid}), {state}"


def _cut(text: str, limit: int) -> str:
    line = text.splitlines()[0] if text else ""
    return line if len(line) <= limit else line[: limit - 3] + "..."


def render_job(job: Job, runner: QueueInfo | None = None) -> str:
    """Return every field of *job* and its error history with tracebacks;
    *runner* is the queue that runs it, if it runs."""
    config = job.config
    fields = [
        ("id", job.id),
        ("name", job.name),
        ("status", job.status.value),
        ("priority", job.priority.name.lower()),
        ("runs", f"{job.attempts} of at most {job.max_retries + 1}"),
        ("created at", human_time(job.created_at) + " UTC"),
        ("run at", human_time(job.run_at) + " UTC"),
        ("started at", _utc(job.started_at)),
        ("finished at", _utc(job.finished_at)),
        ("retry delay", human_duration(config.retry_delay)),
        ("max retry delay", human_duration(config.max_retry_delay)),
        ("timeout", human_duration(config.timeout)),
        ("last error", job.last_error or "-"),
    ]
    if job.owner is not None:
        fields.append(("run by", _describe_runner(job.owner, runner)))
    width = max(len(label) for label, _ in fields) + 1
    lines = [f"{label + ':':<{width}} {value}" for label, value in fields]
    lines.append("payload:")
    lines.extend(_indent(dumps(job.payload)))
    if not job.errors:
        lines.append("errors: none")
    previous = 0
    for error in job.errors:
        lines.append("")
        if error.attempt <= previous:
            # Retrying a dead job starts its attempts over.
            lines.append("(retried from the dead-letter queue: attempts start over)")
            lines.append("")
        previous = error.attempt
        lines.append(
            f"attempt {error.attempt} failed at {human_time(error.failed_at)} UTC: "
            f"{error.error}"
        )
        lines.extend(_indent(error.traceback.rstrip("\n")) if error.traceback else [])
    return "\n".join(lines)


def _utc(moment: datetime | None) -> str:
    return "-" if moment is None else human_time(moment) + " UTC"


def _indent(text: str) -> list[str]:
    return ["    " + line for line in text.splitlines()]


def render_summary(summary: QueueSummary, database: str, now: datetime) -> str:
    """Return the ``stats`` report for *summary*, read at *now*."""
    status_rows = [
        [status.value, str(summary.by_status.get(status, 0))] for status in JobStatus
    ]
    priority_rows = [
        [priority.name.lower(), str(jobs)]
        for priority, jobs in sorted(summary.waiting_by_priority.items(), reverse=True)
    ]
    oldest = summary.oldest_due_at
    if oldest is None:
        oldest_line = "oldest due job: none is waiting for a worker"
    else:
        oldest_line = (
            f"oldest due job: waiting for {human_duration(_age(oldest, now))} "
            f"(due since {human_time(oldest)} UTC)"
        )
    dead = summary.by_status.get(JobStatus.DEAD, 0)
    return "\n".join(
        [
            f"database {database} at {human_time(now)} UTC",
            "",
            render_table(["STATUS", "JOBS"], status_rows),
            "",
            render_table(["PRIORITY", "WAITING"], priority_rows),
            "",
            render_due_by_name(summary),
            "",
            oldest_line,
            f"completed: {summary.completed_last_minute} in the last minute, "
            f"{summary.completed_last_hour} in the last hour",
            f"jobs with a failed run: {summary.failed_last_minute} in the last "
            f"minute, {summary.failed_last_hour} in the last hour",
            f"dead jobs: {dead}",
            "",
            render_queues(summary.queues),
        ]
    )


def render_due_by_name(summary: QueueSummary) -> str:
    """Return the table of due jobs per name, the most first, with a mark on
    the names that no live queue handles."""
    if not summary.due_by_name:
        return "due jobs by name: none is due"
    unhandled = set(summary.unhandled_names)
    names = list(summary.due_by_name.items())
    rows = [
        [f"{name} {UNHANDLED_MARK}" if name in unhandled else name, str(jobs)]
        for name, jobs in names[:MAX_DUE_NAMES]
    ]
    lines = [render_table(["DUE NAME", "JOBS"], rows)]
    hidden = names[MAX_DUE_NAMES:]
    if hidden:
        lines.append(_hidden_names_line(hidden, unhandled))
    if unhandled:
        lines.append(
            f"Jobs of a name that no live queue handles (marked {UNHANDLED_MARK}) "
            "wait for a process with a handler for that name, not for slow "
            "workers."
        )
    return "\n".join(lines)


def _hidden_names_line(hidden: Sequence[tuple[str, int]], unhandled: set[str]) -> str:
    jobs = sum(count for _, count in hidden)
    line = (
        f"({count_of(len(hidden), 'more name')} with {count_of(jobs, 'due job')} "
        "not shown"
    )
    unhandled_hidden = sum(1 for name, _ in hidden if name in unhandled)
    if unhandled_hidden:
        line += f", {unhandled_hidden} of them handled by no live queue"
    return line + ", so pass --json to see every name)"


def render_queues(queues: Sequence[QueueInfo]) -> str:
    """Return the table of the queues recorded in the database."""
    if not queues:
        return (
            "queues: none recorded (a queue records itself while it runs and "
            "removes its record when it stops)"
        )
    rows = [
        [
            queue.id,
            queue.host,
            str(queue.pid),
            human_time(queue.started_at),
            ", ".join(sorted(queue.handles)) or "-",
            _queue_state(queue),
        ]
        for queue in queues
    ]
    headers = ["QUEUE ID", "HOST", "PID", "STARTED (UTC)", "HANDLES", "STATE"]
    return render_table(headers, rows)


def _queue_state(queue: QueueInfo) -> str:
    if queue.alive:
        return "alive"
    if not queue.running:
        return "dead"
    jobs = count_of(queue.running, "running job")
    verb = "is" if queue.running == 1 else "are"
    return f"dead: its {jobs} {verb} recovered by the next running queue"
