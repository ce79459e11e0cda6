"""Helpers shared by the tests: waiting for jobs and reading the database."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import trio

from pulse_trio import Job, JobStatus, Pulse

FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.DEAD})

POLL_INTERVAL = 0.05
"""Virtual seconds between two reads of a job's status."""


def hang_after_start(started: trio.Event) -> Callable[[Any], Awaitable[None]]:
    """Return a handler that sets *started*, then waits until cancelled."""

    async def hang(_: Any) -> None:
        started.set()
        await trio.sleep_forever()

    return hang


async def wait_for_status(
    pulse: Pulse,
    job_id: str,
    statuses: Iterable[JobStatus],
    *,
    interval: float = POLL_INTERVAL,
    limit: float = 3600.0,
) -> Job:
    """Poll the job until its status is one of *statuses*, and return it.

    Raises:
        trio.TooSlowError: *limit* virtual seconds passed first.
    """
    expected = frozenset(statuses)
    with trio.fail_after(limit):
        while True:
            job = await pulse.status(job_id)
            if job.status in expected:
                return job
            await trio.sleep(interval)


async def wait_finished(
    pulse: Pulse,
    job_ids: Iterable[str],
    *,
    interval: float = POLL_INTERVAL,
    limit: float = 3600.0,
) -> list[Job]:
    """Wait until every job has completed or died, and return them in order."""
    with trio.fail_after(limit):
        return [
            await wait_for_status(
                pulse, job_id, FINISHED, interval=interval, limit=limit
            )
            for job_id in job_ids
        ]


def read_rows(pulse: Pulse, sql: str, parameters: Any = ()) -> list[sqlite3.Row]:
    """Run *sql* on the database of *pulse* and return the rows.

    A file database is read on a new connection, so only committed data is
    seen. A private in-memory database has no other connection, so it is
    read on the queue's own (a white-box access to ``Pulse._store``).
    """
    if pulse.database == ":memory:":
        conn = pulse._store.conn
        return list(conn.execute(sql, parameters).fetchall())
    return read_file_rows(Path(pulse.database), sql, parameters)


def read_file_rows(path: Path, sql: str, parameters: Any = ()) -> list[sqlite3.Row]:
    """Run *sql* on a new connection of the database file at *path*."""
    conn = sqlite3.connect(path)
    try:
        conn.row_factory = sqlite3.Row
        return conn.execute(sql, parameters).fetchall()
    finally:
        conn.close()


def read_job_row(pulse: Pulse, job_id: str) -> sqlite3.Row:
    """Return the stored row of one job."""
    rows = read_rows(pulse, "SELECT * FROM pulse_jobs WHERE id = ?", (job_id,))
    assert len(rows) == 1, f"expected one row for job {job_id!r}, found {len(rows)}"
    return rows[0]


def count_jobs(pulse: Pulse) -> int:
    """Return how many jobs the database of *pulse* stores."""
    row = read_rows(pulse, "SELECT count(*) AS n FROM pulse_jobs")[0]
    return int(row["n"])
