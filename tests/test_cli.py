"""The ``pulse-trio`` command line.

The database commands run in-process through ``main(argv)``, against files
that each test fills through the API beforehand. ``worker`` and
``stats --watch`` run as child processes that the tests signal, on the
real clock.
"""

from __future__ import annotations

import argparse
import errno
import importlib.metadata
import io
import json
import re
import runpy
import signal
import sqlite3
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Awaitable, Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import (
    JobConfig,
    JobPriority,
    JobStatus,
    Pulse,
    QueueInfo,
    QueueSummary,
)
from pulse_trio._cli import COMMANDS, main
from pulse_trio._cli_format import (
    count_of,
    render_due_by_name,
    render_queues,
)
from pulse_trio._cli_parser import MAX_WORKERS, build_parser
from pulse_trio._cli_values import (
    EARLIEST_TIME,
    LATEST_TIME,
    MAX_DURATION,
    parse_duration,
    parse_payload,
)
from pulse_trio._cli_worker import exit_code_of

DOCS = Path(__file__).resolve().parent.parent / "docs"

Setup = Callable[[Pulse], Awaitable[Any]]


def make_database(path: Path, setup: Setup, *, run_jobs: bool = False) -> Any:
    """Create the database at *path*, call *setup* on it, and return its result.

    With *run_jobs*, *setup* runs while the queue runs, and the queue is
    drained before it stops. This runs its own ``trio.run`` on the real
    clock, because the CLI stores and compares wall-clock times.
    """

    async def build() -> Any:
        pulse = await Pulse.new(path, workers=1)
        try:
            if not run_jobs:
                return await setup(pulse)
            async with pulse:
                result = await setup(pulse)
                await pulse.drain()
                return result
        finally:
            pulse.close()

    return trio.run(build)


def read_job(path: Path, job_id: str) -> Any:
    async def read() -> Any:
        pulse = await Pulse.new(path)
        try:
            return await pulse.status(job_id)
        finally:
            pulse.close()

    return trio.run(read)


EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

QUEUE_STARTED_AT = datetime(2024, 6, 1, 9, 0, tzinfo=UTC)
"""Start time of the first queue that ``record_queue`` records."""


def write_rows(path: Path, statement: str, rows: Sequence[Sequence[Any]]) -> None:
    """Run *statement* once for each of *rows* on the file, in one transaction."""
    conn = sqlite3.connect(path)
    try:
        with conn:
            conn.executemany(statement, rows)
    finally:
        conn.close()


def microseconds(moment: datetime) -> int:
    return (moment - EPOCH) // timedelta(microseconds=1)


def record_queue(
    path: Path,
    host: str,
    *,
    alive: bool,
    handles: Sequence[str] = (),
    running: Sequence[str] = (),
    started_at: datetime = QUEUE_STARTED_AT,
) -> None:
    """Record a queue on another host in the file, as its ``run()`` does, and
    make the jobs with the ids in *running* its running jobs.

    Only the lease shows whether a queue on another host is alive, so
    *alive* sets it to end an hour after now or to have ended an hour ago.
    """
    queue_id = uuid.uuid4().hex
    now = datetime.now(UTC)
    lease_until = now + timedelta(hours=1 if alive else -1)
    write_rows(
        path,
        "INSERT INTO pulse_owners "
        "(id, host, pid, started_at, lease_until, handles) "
        "VALUES (?, ?, 4121, ?, ?, ?)",
        [
            (
                queue_id,
                host,
                microseconds(started_at),
                microseconds(lease_until),
                json.dumps(sorted(handles)),
            )
        ],
    )
    write_rows(
        path,
        "UPDATE pulse_jobs SET status = 'running', owner = ?, started_at = ? "
        "WHERE id = ?",
        [(queue_id, microseconds(now), job_id) for job_id in running],
    )


def fail(_: Any) -> None:
    raise ValueError("the payment service refused the card")


def succeed(_: Any) -> None:
    pass


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Path]:
    """A database with one completed, one dead, one pending and one
    scheduled job; ``ids_by_status`` reads their ids."""
    path = tmp_path / "jobs.db"

    async def setup(pulse: Pulse) -> None:
        pulse.handle("charge", fail)
        pulse.handle("receipt", succeed)
        await pulse.enqueue_with_config("charge", {"order": 7}, JobConfig.no_retry())
        await pulse.enqueue("receipt", {"order": 7})

    make_database(path, setup, run_jobs=True)

    async def add_waiting(pulse: Pulse) -> None:
        await pulse.enqueue("report", {"month": 5})
        await pulse.schedule("report", {"month": 6}, delay=timedelta(hours=1))

    make_database(path, add_waiting)
    yield path


def run_cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    code = main([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def run_json(capsys: pytest.CaptureFixture[str], *argv: object) -> Any:
    code, out, err = run_cli(capsys, *argv, "--json")
    assert code == 0, err
    return json.loads(out)


def run_rejected(
    capsys: pytest.CaptureFixture[str], database: Path, *argv: object
) -> tuple[str, str]:
    """Run a command that must fail with a usage error and leave the four
    jobs of the ``database`` fixture in place. Return its output and errors."""
    code, out, err = run_cli(capsys, *argv)

    assert code == 2
    assert len(run_json(capsys, "jobs", database)) == 4
    return out, err


def ids_by_status(capsys: pytest.CaptureFixture[str], path: Path) -> dict[str, str]:
    jobs = run_json(capsys, "jobs", path)
    return {job["status"]: job["id"] for job in jobs}


def has_line(pattern: str, text: str) -> bool:
    """Tell whether a whole line of *text* matches the regular expression."""
    return re.search(f"^{pattern}$", text, re.MULTILINE) is not None


JOB_RECORD_KEYS = {
    "id",
    "name",
    "status",
    "priority",
    "attempts",
    "max_retries",
    "payload",
    "last_error",
    "created_at",
    "run_at",
    "started_at",
    "finished_at",
    "owner",
    "config",
}


# -- stats ------------------------------------------------------------------


class TestStats:
    def test_text_counts_by_status(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "stats", database)

        assert code == 0, err
        assert re.search(r"^pending\s+1$", out, re.MULTILINE)
        assert re.search(r"^scheduled\s+1$", out, re.MULTILINE)
        assert re.search(r"^completed\s+1$", out, re.MULTILINE)
        assert re.search(r"^dead\s+1$", out, re.MULTILINE)
        assert re.search(r"^normal\s+2$", out, re.MULTILINE)
        assert "dead jobs: 1" in out
        assert "oldest due job: waiting for" in out

    def test_json_keys_are_stable(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        stats = run_json(capsys, "stats", database)

        assert set(stats) == {
            "database",
            "at",
            "by_status",
            "waiting_by_priority",
            "oldest_due_at",
            "oldest_due_age",
            "completed_last_minute",
            "completed_last_hour",
            "failed_last_minute",
            "failed_last_hour",
            "dead",
            "due_by_name",
            "unhandled_names",
            "queues",
        }
        assert stats["by_status"] == {
            "pending": 1,
            "scheduled": 1,
            "running": 0,
            "retrying": 0,
            "completed": 1,
            "dead": 1,
        }
        assert stats["waiting_by_priority"] == {
            "low": 0,
            "normal": 2,
            "high": 0,
            "critical": 0,
        }
        assert stats["completed_last_minute"] == 1
        assert stats["completed_last_hour"] == 1
        assert stats["failed_last_minute"] == 1
        assert stats["failed_last_hour"] == 1
        assert stats["dead"] == 1
        assert stats["database"] == str(database)

    def test_json_times_are_iso_utc(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        stats = run_json(capsys, "stats", database)

        at = datetime.fromisoformat(stats["at"])
        oldest = datetime.fromisoformat(stats["oldest_due_at"])
        assert at.utcoffset() == timedelta(0)
        assert oldest.utcoffset() == timedelta(0)
        assert oldest <= at
        assert 0 <= stats["oldest_due_age"] < 600

    def test_empty_database_has_no_oldest(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "empty.db"
        make_database(path, lambda pulse: pulse.summary())

        stats = run_json(capsys, "stats", path)
        code, out, _ = run_cli(capsys, "stats", path)

        assert stats["oldest_due_at"] is None
        assert stats["oldest_due_age"] is None
        assert code == 0
        assert "oldest due job: none is waiting" in out

    @pytest.mark.parametrize("interval", ["0", "0.000001", "0.09"])
    def test_watch_interval_below_minimum(
        self, interval: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        # A missing file: if the interval passed, the command would fail on it
        # with status 1 instead of watching.
        path = tmp_path / "missing.db"

        code, out, err = run_cli(capsys, "stats", path, "--watch", interval)

        assert code == 2
        assert out == ""
        assert f"invalid interval {interval!r}: it must be at least 0.1" in err

    def test_watch_interval_minimum_is_accepted(self) -> None:
        args = build_parser().parse_args(["stats", "jobs.db", "--watch", "0.1"])

        assert args.watch == timedelta(seconds=0.1)


class TestStatsQueues:
    def test_text_lists_alive_and_dead(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        pending = ids_by_status(capsys, database)["pending"]
        record_queue(database, "web-1.invalid", alive=True, handles=["report", "a"])
        record_queue(
            database,
            "web-2.invalid",
            alive=False,
            handles=["charge"],
            running=[pending],
            started_at=QUEUE_STARTED_AT + timedelta(hours=1),
        )

        code, out, err = run_cli(capsys, "stats", database)

        assert code == 0, err
        assert has_line(
            r"QUEUE ID\s+HOST\s+PID\s+STARTED \(UTC\)\s+HANDLES\s+STATE", out
        )
        assert has_line(
            r"[0-9a-f]{32}\s+web-1\.invalid\s+4121\s+2024-06-01 09:00:00\s+"
            r"a, report\s+alive",
            out,
        )
        assert has_line(
            r"[0-9a-f]{32}\s+web-2\.invalid\s+4121\s+2024-06-01 10:00:00\s+charge\s+"
            "dead: its 1 running job is recovered by the next running queue",
            out,
        )

    def test_json_records(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        pending = ids_by_status(capsys, database)["pending"]
        record_queue(
            database,
            "web-2.invalid",
            alive=False,
            handles=["b", "a"],
            running=[pending],
        )

        [queue] = run_json(capsys, "stats", database)["queues"]

        assert set(queue) == {
            "id",
            "host",
            "pid",
            "started_at",
            "lease_until",
            "alive",
            "handles",
            "running",
        }
        assert queue["host"] == "web-2.invalid"
        assert queue["pid"] == 4121
        assert queue["started_at"] == "2024-06-01T09:00:00.000000+00:00"
        assert datetime.fromisoformat(queue["lease_until"]) < datetime.now(UTC)
        assert queue["alive"] is False
        assert queue["handles"] == ["a", "b"]
        assert queue["running"] == 1

    def test_none_recorded(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        stats = run_json(capsys, "stats", database)
        code, out, _ = run_cli(capsys, "stats", database)

        assert stats["queues"] == []
        assert code == 0
        assert "queues: none recorded" in out

    @pytest.mark.parametrize(
        ("alive", "running", "state"),
        [
            (True, 0, "alive"),
            (True, 3, "alive"),
            (False, 0, "dead"),
            (
                False,
                1,
                "dead: its 1 running job is recovered by the next running queue",
            ),
            (
                False,
                2,
                "dead: its 2 running jobs are recovered by the next running queue",
            ),
        ],
    )
    def test_state_column(self, alive: bool, running: int, state: str) -> None:
        queue = make_queue(alive=alive, running=running, handles=())

        table = render_queues([queue])

        assert re.split(r"\s{2,}", table.splitlines()[1])[-1] == state


class TestStatsDueByName:
    def test_marks_names_without_live_handler(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        make_database(database, lambda pulse: pulse.enqueue_many("resize", [1, 2]))
        record_queue(database, "web-1.invalid", alive=True, handles=["report"])
        record_queue(database, "web-2.invalid", alive=False, handles=["resize"])

        stats = run_json(capsys, "stats", database)
        code, out, err = run_cli(capsys, "stats", database)

        assert list(stats["due_by_name"].items()) == [("resize", 2), ("report", 1)]
        assert stats["unhandled_names"] == ["resize"]
        assert code == 0, err
        assert has_line(r"DUE NAME\s+JOBS", out)
        assert has_line(r"resize \*\s+2", out)
        assert has_line(r"report\s+1", out)
        assert has_line(re.escape(UNHANDLED_NOTE), out)

    def test_no_note_when_every_name_is_handled(self) -> None:
        queue = make_queue(handles=("report",))

        text = render_due_by_name(make_summary({"report": 4}, [queue]))

        assert text.splitlines() == ["DUE NAME  JOBS", "report    4"]

    def test_none_due(self, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
        path = tmp_path / "empty.db"
        make_database(path, lambda pulse: pulse.summary())

        stats = run_json(capsys, "stats", path)
        code, out, _ = run_cli(capsys, "stats", path)

        assert stats["due_by_name"] == {}
        assert stats["unhandled_names"] == []
        assert code == 0
        assert "due jobs by name: none is due" in out

    def test_lists_top_names_and_counts_the_rest(self) -> None:
        counts = {f"job-{rank:02}": 20 - rank for rank in range(13)}
        queue = make_queue(handles=tuple(counts)[:-1])

        lines = render_due_by_name(make_summary(counts, [queue])).splitlines()

        assert lines[1] == "job-00    20"
        assert lines[10] == "job-09    11"
        assert lines[11] == (
            "(3 more names with 27 due jobs not shown, 1 of them handled by no "
            "live queue, so pass --json to see every name)"
        )
        assert lines[12] == UNHANDLED_NOTE
        assert len(lines) == 13


UNHANDLED_NOTE = (
    "Jobs of a name that no live queue handles (marked *) wait for a process "
    "with a handler for that name, not for slow workers."
)


def make_queue(
    *, handles: Sequence[str], alive: bool = True, running: int = 0
) -> QueueInfo:
    return QueueInfo(
        id="0" * 32,
        host="web-1.invalid",
        pid=4121,
        started_at=QUEUE_STARTED_AT,
        lease_until=QUEUE_STARTED_AT + timedelta(minutes=1),
        alive=alive,
        handles=frozenset(handles),
        running=running,
    )


def make_summary(due_by_name: dict[str, int], queues: list[QueueInfo]) -> QueueSummary:
    return QueueSummary(
        by_status={status: 0 for status in JobStatus},
        waiting_by_priority={},
        oldest_due_at=None,
        completed_last_minute=0,
        completed_last_hour=0,
        failed_last_minute=0,
        failed_last_hour=0,
        due_by_name=due_by_name,
        queues=tuple(queues),
    )


class TestStatsWatch:
    @pytest.mark.parametrize(
        ("options", "expected"),
        [
            (["--json"], '"queues":[{"id":'),
            (["--json"], '"due_by_name":{"report":1}'),
            ([], "\nQUEUE ID "),
            ([], "\nDUE NAME "),
        ],
    )
    def test_refresh_has_new_sections(
        self,
        options: list[str],
        expected: str,
        database: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        record_queue(database, "web-1.invalid", alive=True, handles=["report"])
        # The reader goes away after the text of the first refresh, so the
        # watch ends as after `| head -1`, before it sleeps.
        stdout = ClosedPipe(writes=1)
        monkeypatch.setattr(sys, "stdout", stdout)

        code, _, err = run_cli(capsys, "stats", database, "--watch", *options)

        assert code == 141, err
        assert expected in stdout.getvalue()


# -- errors shared by the database commands -----------------------------------


DATABASE_COMMANDS = [
    ["stats"],
    ["jobs"],
    ["show", "0123"],
    ["retry", "--all-dead"],
    ["delete", "0123"],
    ["enqueue", "report"],
    ["purge", "--status", "dead", "--older-than", "7d"],
]


class TestDatabaseErrors:
    @pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: c[0])
    def test_missing_file_is_not_created(
        self, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "missing.db"
        name, *rest = command

        code, out, err = run_cli(capsys, name, path, *rest)

        assert code == 1
        assert out == ""
        assert f"no database file at {str(path)!r}" in err
        assert "Traceback" not in err
        assert not path.exists()

    @pytest.mark.parametrize("command", DATABASE_COMMANDS, ids=lambda c: c[0])
    def test_foreign_database_is_left_unchanged(
        self, command: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "other.db"
        conn = sqlite3.connect(path)
        conn.execute("CREATE TABLE notes (body TEXT)")
        conn.commit()
        conn.close()
        name, *rest = command

        code, _out, err = run_cli(capsys, name, path, *rest)

        assert code == 1
        assert "is not a pulse-trio database" in err
        assert "Traceback" not in err
        conn = sqlite3.connect(path)
        tables = [row[0] for row in conn.execute("SELECT name FROM sqlite_master")]
        conn.close()
        assert tables == ["notes"]

    def test_folder_is_rejected(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(capsys, "stats", tmp_path)

        assert code == 1
        assert "is not a file" in err

    def test_non_sqlite_file_is_rejected(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "notes.db"
        path.write_text("these are not the jobs you are looking for\n" * 100)

        code, _, err = run_cli(capsys, "jobs", path)

        assert code == 1
        assert "is it an SQLite file?" in err
        assert "Traceback" not in err

    def test_no_command_prints_usage(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, _, err = run_cli(capsys)

        assert code == 2
        assert "usage: pulse-trio" in err

    def test_help_exits_zero(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, _ = run_cli(capsys, "--help")

        assert code == 0
        for command in COMMANDS:
            assert command in out

    def test_version(self, capsys: pytest.CaptureFixture[str]) -> None:
        code, out, err = run_cli(capsys, "--version")

        assert code == 0, err
        assert out == f"pulse-trio {importlib.metadata.version('pulse-trio')}\n"


class ClosedPipe(io.StringIO):
    """Standard output whose reader goes away after *writes* writes, so
    every later write fails."""

    def __init__(self, writes: int = 0) -> None:
        super().__init__()
        self.writes_left = writes

    def write(self, text: str) -> int:
        if self.writes_left == 0:
            raise BrokenPipeError(errno.EPIPE, "Broken pipe")
        self.writes_left -= 1
        return super().write(text)


class TestBrokenPipe:
    @pytest.mark.parametrize(
        "command",
        [
            ["jobs", "--limit", "5000"],
            ["jobs", "--json"],
            ["show", "ID"],
            ["stats"],
            ["stats", "--watch", "0.1", "--json"],
            ["retry", "--all-dead"],
            ["delete", "ID"],
            ["enqueue", "report"],
            ["purge", "--status", "dead", "--older-than", "0s", "--dry-run"],
        ],
        ids=" ".join,
    )
    def test_closed_stdout_exits_141(
        self,
        command: list[str],
        database: Path,
        capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]
        name, *rest = [dead if arg == "ID" else arg for arg in command]
        monkeypatch.setattr(sys, "stdout", ClosedPipe())

        code, _, err = run_cli(capsys, name, database, *rest)

        assert code == 141
        assert err == ""


# -- jobs and show ------------------------------------------------------------


class TestJobs:
    def test_table_lists_every_job(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = ids_by_status(capsys, database)

        code, out, err = run_cli(capsys, "jobs", database)

        assert code == 0, err
        lines = out.splitlines()
        assert lines[0].split()[:4] == ["ID", "NAME", "STATUS", "PRIORITY"]
        assert len(lines) == 5
        for job_id in ids.values():
            assert job_id in out
        assert "ValueError: the payment service refused the card" in out
        assert "OWNER" not in out

    def test_table_shows_owner_of_running_jobs(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = ids_by_status(capsys, database)
        record_queue(database, "web-1.invalid", alive=True, running=[ids["pending"]])
        [queue] = run_json(capsys, "stats", database)["queues"]

        code, out, err = run_cli(capsys, "jobs", database)

        assert code == 0, err
        header, *rows = out.splitlines()
        assert header.split()[-3:] == ["OWNER", "LAST", "ERROR"]
        column = header.index("OWNER")
        owners = {row.split()[0]: row[column:].split()[0] for row in rows}
        assert owners.pop(ids["pending"]) == queue["id"]
        assert set(owners.values()) == {"-"}

    def test_status_filter(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        jobs = run_json(capsys, "jobs", database, "--status", "dead")

        assert [job["name"] for job in jobs] == ["charge"]
        assert jobs[0]["status"] == "dead"

    def test_name_filter(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        jobs = run_json(capsys, "jobs", database, "--name", "report")

        assert sorted(job["status"] for job in jobs) == ["pending", "scheduled"]

    def test_limit_keeps_newest_and_says_so(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        jobs = run_json(capsys, "jobs", database, "--limit", "1")
        code, out, _ = run_cli(capsys, "jobs", database, "--limit", "1")

        assert [job["status"] for job in jobs] == ["scheduled"]
        assert code == 0
        assert out.splitlines()[-1] == (
            "(only the newest job is shown, so pass a larger --limit to see more)"
        )

    def test_limit_message_counts_jobs(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, "jobs", database, "--limit", "2")

        assert code == 0
        assert "(only the newest 2 jobs are shown," in out

    def test_no_match_message(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, "jobs", database, "--name", "nothing")

        assert code == 0
        assert out.strip() == "no jobs match"

    def test_json_record_keys(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        jobs = run_json(capsys, "jobs", database, "--status", "dead")

        assert set(jobs[0]) == JOB_RECORD_KEYS
        assert jobs[0]["config"] == {
            "priority": "normal",
            "max_retries": 0,
            "retry_delay": 5.0,
            "max_retry_delay": 3600.0,
            "timeout": 300.0,
        }
        assert jobs[0]["payload"] == {"order": 7}
        assert datetime.fromisoformat(jobs[0]["finished_at"]).tzinfo is not None

    def test_invalid_status_is_usage_error(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(capsys, "jobs", database, "--status", "lost")

        assert code == 2
        assert "invalid choice: 'lost'" in err

    @pytest.mark.parametrize(
        "limit", ["0", "1000001", "9223372036854775807", "99999999999999999999", "x"]
    )
    def test_invalid_limit_is_usage_error(
        self, limit: str, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "jobs", database, "--limit", limit)

        assert code == 2
        assert out == ""
        assert f"invalid value {limit!r}: use an integer from 1 to 1000000" in err
        assert "Traceback" not in err

    def test_maximum_limit_is_accepted(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        jobs = run_json(capsys, "jobs", database, "--limit", "1000000")

        assert len(jobs) == 4


class TestShow:
    def test_text_has_error_and_traceback(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]

        code, out, err = run_cli(capsys, "show", database, dead)

        assert code == 0, err
        assert re.search(r"^status:\s+dead$", out, re.MULTILINE)
        assert "attempt 1 failed at" in out
        assert "Traceback (most recent call last)" in out
        assert "in fail" in out
        assert '"order": 7' in out
        assert "retried from the dead-letter queue" not in out

    def test_text_marks_retry_restart(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]
        run_cli(capsys, "retry", database, dead)

        async def fail_again(pulse: Pulse) -> None:
            pulse.handle("charge", fail)

        make_database(database, fail_again, run_jobs=True)

        code, out, err = run_cli(capsys, "show", database, dead)

        assert code == 0, err
        assert out.count("attempt 1 failed at") == 2
        assert "(retried from the dead-letter queue: attempts start over)" in out

    def test_json_has_error_history(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]

        job = run_json(capsys, "show", database, dead)

        assert job["id"] == dead
        assert len(job["errors"]) == 1
        error = job["errors"][0]
        assert set(error) == {"attempt", "error", "traceback", "failed_at"}
        assert error["attempt"] == 1
        assert error["error"] == "ValueError: the payment service refused the card"
        assert "Traceback (most recent call last)" in error["traceback"]

    def test_unknown_id(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "show", database, "feedface")

        assert code == 1
        assert out == ""
        assert "no job with id 'feedface'" in err
        assert "Traceback" not in err


# -- retry --------------------------------------------------------------------


class TestRetry:
    def test_dead_job_becomes_pending(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]

        code, out, err = run_cli(capsys, "retry", database, dead)

        assert code == 0, err
        assert out.strip() == f"retried job {dead}"
        job = read_job(database, dead)
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0
        assert len(job.errors) == 1

    def test_unknown_id_fails_but_others_retry(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]

        code, out, err = run_cli(capsys, "retry", database, "feedface", dead, "--json")

        assert code == 1
        assert json.loads(out) == {"retried": 1, "ids": [dead]}
        assert "no job with id 'feedface'" in err
        assert read_job(database, dead).status is JobStatus.PENDING

    def test_job_not_dead(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        completed = ids_by_status(capsys, database)["completed"]

        code, _, err = run_cli(capsys, "retry", database, completed)

        assert code == 1
        assert f"job {completed!r} is completed, not dead" in err

    def test_all_dead(self, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
        path = tmp_path / "dead.db"

        async def setup(pulse: Pulse) -> None:
            pulse.handle("charge", fail)
            pulse.handle("refund", fail)
            config = JobConfig.no_retry()
            await pulse.enqueue_many("charge", [1, 2, 3], config)
            await pulse.enqueue_with_config("refund", 4, config)

        make_database(path, setup, run_jobs=True)

        named = run_json(capsys, "retry", path, "--all-dead", "--name", "refund")
        code, out, _ = run_cli(capsys, "retry", path, "--all-dead")
        left = run_json(capsys, "jobs", path, "--status", "dead")

        assert named == {"retried": 1}
        assert code == 0
        assert out.strip() == "retried 3 dead jobs"
        assert left == []

    def test_all_dead_counts_one_job(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "retry", database, "--all-dead")

        assert code == 0, err
        assert out.strip() == "retried 1 dead job"

    def test_needs_ids_or_all_dead(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "retry", database)

        assert code == 2
        assert out == ""
        assert "usage: pulse-trio retry" in err
        assert err.splitlines()[-1] == (
            "pulse-trio retry: error: give the ids of dead jobs to retry, or --all-dead"
        )

    def test_ids_and_all_dead_conflict(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]

        code, _, err = run_cli(capsys, "retry", database, dead, "--all-dead")

        assert code == 2
        assert "give job ids or --all-dead, not both" in err
        assert read_job(database, dead).status is JobStatus.DEAD

    @pytest.mark.parametrize("with_id", [True, False], ids=["with id", "alone"])
    def test_name_needs_all_dead(
        self, with_id: bool, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        dead = ids_by_status(capsys, database)["dead"]
        ids = [dead] if with_id else []

        code, _, err = run_cli(capsys, "retry", database, *ids, "--name", "charge")

        assert code == 2
        assert "--name needs --all-dead, so add --all-dead or drop --name" in err
        assert read_job(database, dead).status is JobStatus.DEAD


# -- recover and the queue that runs a job ------------------------------------


class TestRecover:
    def test_recovers_only_jobs_of_dead_queues(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "recover.db"
        dead_queue_job, live_queue_job = make_database(
            path, lambda pulse: pulse.enqueue_many("export", [1, 2])
        )
        record_queue(path, "dead.example", alive=False, running=[dead_queue_job])
        record_queue(path, "live.example", alive=True, running=[live_queue_job])

        code, out, err = run_cli(capsys, "recover", path)

        assert code == 0, err
        assert f"recovered job {dead_queue_job} (export), now pending" in out
        assert "recovered 1 job of dead queues" in out
        statuses = {job["id"]: job["status"] for job in run_json(capsys, "jobs", path)}
        assert statuses == {dead_queue_job: "pending", live_queue_job: "running"}
        queues = run_json(capsys, "stats", path)["queues"]
        assert [queue["host"] for queue in queues] == ["live.example"]

    def test_json_lists_recovered_jobs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "recover.db"
        [lost] = make_database(path, lambda pulse: pulse.enqueue_many("export", [1]))
        record_queue(path, "dead.example", alive=False, running=[lost])

        records = run_json(capsys, "recover", path)

        assert [record["id"] for record in records] == [lost]
        assert set(records[0]) == JOB_RECORD_KEYS
        assert run_json(capsys, "recover", path) == []

    @pytest.mark.processes
    def test_prints_no_log_records(self, tmp_path: Path) -> None:
        # The library logs each recovered job as a warning; run as a
        # program with no logging set up, the command prints only its own
        # lines.
        path = tmp_path / "recover.db"
        [lost] = make_database(path, lambda pulse: pulse.enqueue_many("export", [1]))
        record_queue(path, "dead.example", alive=False, running=[lost])

        result = subprocess.run(
            [sys.executable, "-m", "pulse_trio", "recover", str(path)],
            capture_output=True,
            text=True,
            timeout=STARTUP_TIMEOUT,
            check=False,
        )

        assert result.returncode == 0, result.stderr
        assert result.stderr == ""
        assert f"recovered job {lost} (export), now pending" in result.stdout

    def test_show_names_running_queue(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "show.db"
        [job_id] = make_database(path, lambda pulse: pulse.enqueue_many("export", [1]))
        record_queue(path, "live.example", alive=True, running=[job_id])

        code, out, _ = run_cli(capsys, "show", path, job_id)
        record = run_json(capsys, "show", path, job_id)

        assert code == 0
        assert has_line(
            r"run by: +queue [0-9a-f]{32} \(host live\.example, pid 4121\), alive", out
        )
        assert record["owner"] is not None

    def test_enqueue_warns_of_unhandled_name(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "names.db"
        make_database(path, lambda pulse: pulse.enqueue_many("send_email", []))
        record_queue(path, "live.example", alive=True, handles=["send_email"])

        typo_code, _, typo_err = run_cli(capsys, "enqueue", path, "send_emial")
        code, _, err = run_cli(capsys, "enqueue", path, "send_email")

        assert typo_code == 0
        assert "warning: no running queue handles jobs named 'send_emial'" in typo_err
        assert code == 0
        assert err == ""
        assert len(run_json(capsys, "jobs", path)) == 2


# -- delete -------------------------------------------------------------------


class TestDelete:
    def test_deletes_each_id(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = ids_by_status(capsys, database)
        names = {
            "completed": "receipt",
            "dead": "charge",
            "pending": "report",
            "scheduled": "report",
        }

        code, out, err = run_cli(capsys, "delete", database, *ids.values())

        assert code == 0, err
        assert out.splitlines() == [
            f"deleted job {job_id} ({names[status]})" for status, job_id in ids.items()
        ]
        assert run_json(capsys, "jobs", database) == []

    def test_json_lists_records_of_deleted_jobs(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = ids_by_status(capsys, database)

        code, out, err = run_cli(
            capsys, "delete", database, ids["dead"], "feedface", "--json"
        )

        assert code == 1
        [record] = json.loads(out)
        assert set(record) == JOB_RECORD_KEYS
        assert record["id"] == ids["dead"]
        assert record["name"] == "charge"
        assert record["status"] == "dead"
        assert "no job with id 'feedface'" in err

    @pytest.mark.parametrize(
        ("target", "message"),
        [
            (
                "feedface",
                "pulse-trio: error: no job with id 'feedface' in {database!r}",
            ),
            (
                "RUNNING",
                "job {target!r} (report) is running, so it was not deleted. "
                "Delete it once its run ends",
            ),
        ],
        ids=["unknown", "running"],
    )
    def test_failed_id_leaves_others_deleted(
        self,
        target: str,
        message: str,
        database: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        ids = ids_by_status(capsys, database)
        if target == "RUNNING":
            target = ids["pending"]
            record_queue(database, "web-1.invalid", alive=True, running=[target])

        code, out, err = run_cli(capsys, "delete", database, target, ids["dead"])

        assert code == 1
        assert out == f"deleted job {ids['dead']} (charge)\n"
        assert message.format(database=str(database), target=target) in err
        assert "Traceback" not in err
        left = {job["id"] for job in run_json(capsys, "jobs", database)}
        assert ids["dead"] not in left
        assert len(left) == 3

    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            ([], "give the ids of the jobs to delete, or --name, --status or both"),
            (["feedface", "--name", "report"], "give job ids or --name/--status"),
            (["feedface", "--dry-run"], "--dry-run works with --name or --status"),
            (["--status", "running"], "argument --status: invalid choice"),
        ],
        ids=["nothing", "ids-and-filter", "dry-run-with-ids", "running"],
    )
    def test_usage_errors_delete_nothing(
        self,
        argv: list[str],
        message: str,
        database: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        out, err = run_rejected(capsys, database, "delete", database, *argv)

        assert out == ""
        assert message in err

    @pytest.mark.parametrize("name", ["", "   ", "x" * 201])
    def test_invalid_name_is_a_usage_error(
        self, name: str, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        out, err = run_rejected(capsys, database, "delete", database, "--name", name)

        assert out == ""
        assert "pulse-trio: error: invalid --name: job name" in err

    def test_deletes_every_job_of_a_name(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "delete", database, "--name", "report")

        assert code == 0, err
        assert out == "deleted 2 jobs named 'report'\n"
        left = {job["name"] for job in run_json(capsys, "jobs", database)}
        assert left == {"charge", "receipt"}

    def test_status_and_name_together(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["delete", database, "--name", "report", "--status", "SCHEDULED"]

        code, out, err = run_cli(capsys, *argv)

        assert code == 0, err
        assert out == "deleted 1 scheduled job named 'report'\n"
        left = {job["status"] for job in run_json(capsys, "jobs", database)}
        assert left == {"completed", "dead", "pending"}

    def test_dry_run_counts_and_json_reports(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(
            capsys, "delete", database, "--status", "dead", "--dry-run"
        )
        assert code == 0, err
        assert out == "would delete 1 dead job (dry run)\n"
        assert len(run_json(capsys, "jobs", database)) == 4

        argv = ["delete", database, "--status", "dead", "--dry-run"]
        assert run_json(capsys, *argv) == {"would_delete": 1, "by_status": {"dead": 1}}
        record = run_json(capsys, "delete", database, "--status", "dead")

        assert record == {"deleted": 1}
        left = {job["status"] for job in run_json(capsys, "jobs", database)}
        assert left == {"completed", "pending", "scheduled"}

    def test_dry_run_counts_each_status(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        argv = ["delete", database, "--name", "report", "--dry-run"]

        code, out, err = run_cli(capsys, *argv)
        record = run_json(capsys, *argv)

        assert code == 0, err
        assert out == (
            "would delete 2 jobs named 'report': 1 pending, 1 scheduled (dry run)\n"
        )
        assert record["would_delete"] == 2
        assert record["by_status"] == {
            "pending": 1,
            "scheduled": 1,
            "retrying": 0,
            "completed": 0,
            "dead": 0,
        }
        assert len(run_json(capsys, "jobs", database)) == 4

    def test_running_job_is_left_alone(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        ids = ids_by_status(capsys, database)
        record_queue(database, "web-1.invalid", alive=True, running=[ids["pending"]])

        record = run_json(capsys, "delete", database, "--name", "report")

        assert record == {"deleted": 1}
        [left] = run_json(capsys, "jobs", database, "--name", "report")
        assert left["id"] == ids["pending"]
        assert left["status"] == "running"


# -- enqueue ------------------------------------------------------------------


class TestEnqueue:
    def test_due_now_with_payload(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = run_json(capsys, "enqueue", database, "report", '{"month": 7}')

        job = read_job(database, record["id"])
        assert job.name == "report"
        assert job.payload == {"month": 7}
        assert job.status is JobStatus.PENDING
        assert job.priority is JobPriority.NORMAL
        assert record["status"] == "pending"

    def test_payload_defaults_to_null(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = run_json(capsys, "enqueue", database, "cleanup")

        assert record["payload"] is None

    def test_text_output_names_the_job(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(capsys, "enqueue", database, "cleanup")

        assert code == 0
        assert re.fullmatch(
            r"enqueued job [0-9a-f]{32} \(cleanup\), pending, due at .+ UTC\n", out
        )

    @pytest.mark.parametrize(
        ("given", "expected"),
        [("high", JobPriority.HIGH), ("CRITICAL", JobPriority.CRITICAL), ("0", 0)],
    )
    def test_priority(
        self,
        given: str,
        expected: JobPriority,
        database: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        record = run_json(
            capsys, "enqueue", database, "report", "1", "--priority", given
        )

        assert read_job(database, record["id"]).priority == expected

    def test_in_duration(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        before = datetime.now(UTC)
        record = run_json(capsys, "enqueue", database, "report", "1", "--in", "1h30m")
        after = datetime.now(UTC)

        job = read_job(database, record["id"])
        assert job.status is JobStatus.SCHEDULED
        assert before + timedelta(minutes=90) <= job.run_at
        assert job.run_at <= after + timedelta(minutes=90)

    def test_at_time_with_offset(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = run_json(
            capsys,
            "enqueue",
            database,
            "report",
            "1",
            "--at",
            "2099-06-01T11:00:00+02:00",
        )

        job = read_job(database, record["id"])
        assert job.run_at == datetime(2099, 6, 1, 9, 0, tzinfo=UTC)
        assert record["run_at"] == "2099-06-01T09:00:00.000000+00:00"

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["{user: 1}"], "invalid JSON payload '{user: 1}'"),
            (["1", "--in", "5 minutes"], "invalid duration '5 minutes'"),
            (["1", "--in", "30m1h"], "give each unit once, largest first"),
            (["1", "--at", "next tuesday"], "invalid time 'next tuesday'"),
            (["1", "--at", "2099-06-01T09:00"], "it has no UTC offset"),
            (["1", "--priority", "urgent"], "invalid priority 'urgent'"),
            (["1", "--at", "2099-06-01T09:00Z", "--in", "1h"], "not allowed with"),
            (["NaN"], "invalid JSON payload 'NaN': JSON has no number NaN"),
            (["Infinity"], "JSON has no number Infinity"),
            (["--", "-Infinity"], "JSON has no number -Infinity"),
            (['{"a": [NaN]}'], "JSON has no number NaN"),
            (["1e999"], "JSON has no number 1e999 that fits a 64-bit float"),
            (["[1, -1e400]"], "JSON has no number -1e400 that fits"),
            (["[" * 100_000], "it is nested too deeply"),
            (["1" * 5000], "Exceeds the limit"),
            (["1", "--in", "2000000d"], "the maximum is 366000d"),
            (
                ["1", "--at", "0001-01-01T00:00:00Z"],
                "it must be from 0001-01-02T00:00:00Z to 9999-12-30T00:00:00Z",
            ),
            (["1", "--at", "0001-01-01T22:59:59-01:00"], "it must be from"),
            (["1", "--at", "9999-12-31T23:59:59Z"], "it must be from"),
            (["1", "--at", "9999-12-30T00:00:00.000001Z"], "it must be from"),
            (["1", "--max-retries", "-1"], "max_retries must be 0 or more"),
            (["1", "--max-retries", "many"], "invalid value 'many'"),
            (["1", "--max-retries", str(2**70)], "max_retries must be at most"),
            (["1", "--timeout", "0"], "Pass --no-timeout for no time limit"),
            (["1", "--timeout", "5m", "--no-timeout"], "not allowed with"),
            (["1", "--retry-delay", "-5"], "invalid duration '-5'"),
            (["1", "--retry-delay", "2h"], "also pass --max-retry-delay 2h or more"),
            (
                ["1", "--retry-delay", "10m", "--max-retry-delay", "5m"],
                "--retry-delay 10m is longer than the max retry delay 5m",
            ),
        ],
    )
    def test_invalid_arguments_store_nothing(
        self,
        options: list[str],
        message: str,
        database: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        argv = ["enqueue", database, "report", *options]

        out, err = run_rejected(capsys, database, *argv)

        assert out == ""
        assert message in err
        assert "Traceback" not in err

    @pytest.mark.parametrize("name", ["", " "])
    def test_blank_name_is_usage_error(
        self, name: str, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        _, err = run_rejected(capsys, database, "enqueue", database, name)

        assert f"invalid job name {name!r}: it is empty or blank" in err

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (["n" * 201], "job name is 201 characters long"),
            (["report", '"\\udc80"'], "is not valid Unicode"),
        ],
        ids=["long name", "lone surrogate"],
    )
    def test_queue_rejections_are_usage_errors(
        self,
        options: list[str],
        message: str,
        database: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        out, err = run_rejected(capsys, database, "enqueue", database, *options)

        assert out == ""
        assert err.startswith("pulse-trio: error: ")
        assert message in err

    @pytest.mark.parametrize(
        "argv",
        [
            ["charge", "--in", "90", '{"a": 1}'],
            ["--in", "90", "charge", '{"a": 1}'],
            ["charge", '{"a": 1}', "--in", "90"],
            ["--json", "charge", "--in", "90", '{"a": 1}'],
        ],
        ids=" ".join,
    )
    def test_options_and_payload_in_any_order(
        self, argv: list[str], database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, err = run_cli(capsys, "enqueue", database, *argv, "--json")

        assert code == 0, err
        record = json.loads(out)
        assert record["name"] == "charge"
        assert record["payload"] == {"a": 1}
        assert record["status"] == "scheduled"

    @pytest.mark.parametrize(
        ("given", "expected"),
        [
            ("0001-01-02T00:00:00Z", EARLIEST_TIME),
            ("9999-12-30T00:00:00Z", LATEST_TIME),
        ],
    )
    def test_at_time_range_bounds_are_accepted(
        self,
        given: str,
        expected: datetime,
        database: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        record = run_json(capsys, "enqueue", database, "report", "--at", given)

        assert read_job(database, record["id"]).run_at == expected

    def test_config_options_set_job_config(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = run_json(
            capsys,
            "enqueue",
            database,
            "report",
            "--max-retries",
            "7",
            "--retry-delay",
            "30s",
            "--max-retry-delay",
            "2h",
            "--timeout",
            "1m",
            "--priority",
            "high",
        )

        config = read_job(database, record["id"]).config
        assert config == JobConfig(
            priority=JobPriority.HIGH,
            max_retries=7,
            retry_delay=timedelta(seconds=30),
            max_retry_delay=timedelta(hours=2),
            timeout=timedelta(minutes=1),
        )
        assert record["max_retries"] == 7

    def test_no_timeout(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = run_json(capsys, "enqueue", database, "report", "--no-timeout")

        config = read_job(database, record["id"]).config
        assert config.timeout is None
        assert config.max_retries == JobConfig().max_retries
        assert record["config"]["timeout"] is None

    def test_config_defaults_without_options(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        record = run_json(capsys, "enqueue", database, "report")

        assert read_job(database, record["id"]).config == JobConfig()


# -- purge --------------------------------------------------------------------


def backdate_finished(path: Path, job_id: str, by: timedelta) -> None:
    """Move the finish time of a job into the past, directly in the file."""
    write_rows(
        path,
        "UPDATE pulse_jobs SET finished_at = finished_at - ? WHERE id = ?",
        [(by // timedelta(microseconds=1), job_id)],
    )


class TestPurge:
    def test_deletes_only_older_jobs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "old.db"

        async def setup(pulse: Pulse) -> list[str]:
            pulse.handle("receipt", succeed)
            return await pulse.enqueue_many("receipt", [1, 2])

        old, recent = make_database(path, setup, run_jobs=True)
        backdate_finished(path, old, timedelta(days=8))

        result = run_json(
            capsys, "purge", path, "--status", "completed", "--older-than", "7d"
        )
        remaining = run_json(capsys, "jobs", path)

        assert result == {"deleted": 1}
        assert [job["id"] for job in remaining] == [recent]

    def test_text_output(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, out, _ = run_cli(
            capsys, "purge", database, "--status", "dead", "--older-than", "0s"
        )

        assert code == 0
        assert out.strip() == "deleted 1 dead job that finished more than 0s ago"

    def test_dry_run_counts_and_keeps_jobs(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "old.db"

        async def setup(pulse: Pulse) -> list[str]:
            pulse.handle("receipt", succeed)
            return await pulse.enqueue_many("receipt", [1, 2, 3])

        old, older, _ = make_database(path, setup, run_jobs=True)
        backdate_finished(path, old, timedelta(days=8))
        backdate_finished(path, older, timedelta(days=9))
        purge = ["purge", path, "--status", "completed", "--older-than", "7d"]

        dry_run = run_json(capsys, *purge, "--dry-run")
        code, out, _ = run_cli(capsys, *purge, "--dry-run")
        kept = run_json(capsys, "jobs", path)
        deleted = run_json(capsys, *purge)

        assert dry_run == {"would_delete": 2}
        assert code == 0
        assert out.strip() == (
            "would delete 2 completed jobs that finished more than 7d ago (dry run)"
        )
        assert len(kept) == 3
        assert deleted == {"deleted": 2}

    def test_dry_run_reads_past_first_batch(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        path = tmp_path / "many.db"

        async def setup(pulse: Pulse) -> None:
            pulse.handle("receipt", succeed)
            await pulse.enqueue_many("receipt", list(range(2500)))

        make_database(path, setup, run_jobs=True)
        purge = ["purge", path, "--status", "completed", "--older-than", "0s"]

        assert run_json(capsys, *purge, "--dry-run") == {"would_delete": 2500}
        assert run_json(capsys, *purge) == {"deleted": 2500}

    def test_dry_run_with_maximum_age(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        result = run_json(
            capsys,
            "purge",
            database,
            "--status",
            "dead",
            "--older-than",
            "366000d",
            "--dry-run",
        )

        assert result == {"would_delete": 0}

    def test_older_than_over_maximum_is_usage_error(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(
            capsys, "purge", database, "--status", "dead", "--older-than", "2000000d"
        )

        assert code == 2
        assert "invalid duration '2000000d': the maximum is 366000d" in err
        assert "Traceback" not in err
        assert len(run_json(capsys, "jobs", database, "--status", "dead")) == 1

    def test_waiting_status_is_rejected(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(
            capsys, "purge", database, "--status", "pending", "--older-than", "1d"
        )

        assert code == 2
        assert "invalid choice: 'pending'" in err

    def test_older_than_is_required(
        self, database: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(capsys, "purge", database, "--status", "dead")

        assert code == 2
        assert "--older-than" in err


# -- values -------------------------------------------------------------------


class TestDuration:
    @pytest.mark.parametrize(
        ("text", "seconds"),
        [
            ("90", 90),
            ("0", 0),
            ("2.5", 2.5),
            ("30s", 30),
            ("5m", 300),
            ("2h", 7200),
            ("7d", 604_800),
            ("2w", 1_209_600),
            ("1h30m", 5400),
            ("1d2h3m4s", 93_784),
            ("1.5h", 5400),
            (" 10M ", 600),
        ],
    )
    def test_valid(self, text: str, seconds: float) -> None:
        assert parse_duration(text) == timedelta(seconds=seconds)

    @pytest.mark.parametrize(
        "text", ["", "5x", "m5", "30m1h", "1h1h", "-5", "nan", "inf", "1h 30m", "h"]
    )
    def test_invalid(self, text: str) -> None:
        with pytest.raises(Exception, match="invalid duration") as info:
            parse_duration(text)
        assert type(info.value).__name__ == "ArgumentTypeError"

    @pytest.mark.parametrize("text", ["366001d", "2000000d", "1e300", "99999999w"])
    def test_over_maximum(self, text: str) -> None:
        with pytest.raises(Exception, match="the maximum is 366000d"):
            parse_duration(text)

    def test_maximum_is_accepted(self) -> None:
        assert parse_duration("366000d") == MAX_DURATION

    def test_maximum_matches_library(self) -> None:
        JobConfig(retry_delay=MAX_DURATION)
        # The library compares float seconds, whose step near the maximum is
        # a few microseconds, so the excess here is a millisecond.
        with pytest.raises(ValueError, match="too long"):
            JobConfig(retry_delay=MAX_DURATION + timedelta(milliseconds=1))


class TestLimitsMatchLibrary:
    async def test_time_range_matches_schedule(self) -> None:
        pulse = Pulse.in_memory()
        try:
            for moment in (EARLIEST_TIME, LATEST_TIME):
                job_id = await pulse.schedule("report", None, moment)
                assert (await pulse.status(job_id)).run_at == moment
            outside = [
                EARLIEST_TIME - timedelta(microseconds=1),
                LATEST_TIME + timedelta(microseconds=1),
            ]
            for moment in outside:
                with pytest.raises(ValueError, match="outside the supported range"):
                    await pulse.schedule("report", None, moment)
        finally:
            pulse.close()

    def test_max_workers_matches_library(self) -> None:
        pulse = Pulse.in_memory()
        try:
            pulse.with_workers(MAX_WORKERS)
            with pytest.raises(ValueError, match="at most"):
                pulse.with_workers(MAX_WORKERS + 1)
        finally:
            pulse.close()


class TestPayload:
    @pytest.mark.parametrize(
        ("text", "expected"),
        [
            ("null", None),
            ('{"a": [1, 2.5, -3e10]}', {"a": [1, 2.5, -3e10]}),
            ('"NaN"', "NaN"),
            ("1.7976931348623157e308", 1.7976931348623157e308),
        ],
    )
    def test_valid(self, text: str, expected: Any) -> None:
        assert parse_payload(text) == expected

    def test_long_payload_is_shortened_in_message(self) -> None:
        text = "{" + "x" * 500

        with pytest.raises(Exception, match=r"\.\.\. \(501 characters\)") as info:
            parse_payload(text)
        assert "x" * 100 not in str(info.value)


def test_count_of() -> None:
    assert count_of(0, "dead job") == "0 dead jobs"
    assert count_of(1, "dead job") == "1 dead job"
    assert count_of(2, "job") == "2 jobs"


class TestExitCode:
    def test_system_exit_in_groups(self) -> None:
        group = BaseExceptionGroup(
            "outer", [BaseExceptionGroup("inner", [SystemExit(3)])]
        )

        assert exit_code_of(group) == 3

    def test_system_exit_beside_cancellations(self) -> None:
        cancelled = _cancelled()
        group = BaseExceptionGroup("queue", [cancelled, SystemExit(4)])

        assert exit_code_of(group) == 4

    def test_system_exit_without_code(self) -> None:
        assert exit_code_of(BaseExceptionGroup("g", [SystemExit()])) == 0

    def test_keyboard_interrupt(self) -> None:
        assert exit_code_of(BaseExceptionGroup("g", [KeyboardInterrupt()])) == 130

    def test_other_error_is_not_an_exit(self) -> None:
        group = BaseExceptionGroup("g", [SystemExit(3), ValueError("bug")])

        assert exit_code_of(group) is None


def _cancelled() -> BaseException:
    async def capture() -> BaseException:
        with trio.CancelScope() as scope:
            scope.cancel()
            try:
                await trio.lowlevel.checkpoint()
            except trio.Cancelled as exc:
                return exc
        raise AssertionError("the checkpoint was not cancelled")

    return trio.run(capture)


# -- worker: loading the app --------------------------------------------------


@pytest.fixture
def app_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A folder for app modules; sys.path and sys.modules are restored after."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setattr(sys, "modules", dict(sys.modules))
    folder = tmp_path / "apps"
    folder.mkdir()
    return folder


class TestWorkerApp:
    @pytest.mark.parametrize("app", ["nocolon", "mod:", ":attr", "my-app:pulse"])
    def test_malformed_app_is_usage_error(
        self, app: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(capsys, "worker", app)

        assert code == 2
        assert f"invalid app {app!r}: use MODULE:ATTRIBUTE" in err

    @pytest.mark.parametrize(
        ("options", "message"),
        [
            (
                ["--shutdown-timeout", "500000d"],
                "invalid duration '500000d': the maximum is 366000d",
            ),
            (["--workers", "10001"], "invalid value '10001': use an integer from 1"),
            (["--workers", "0"], "invalid value '0': use an integer from 1 to 10000"),
        ],
    )
    def test_invalid_option_is_usage_error(
        self, options: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(capsys, "worker", "no_such_app_module:pulse", *options)

        assert code == 2
        assert message in err
        assert "Traceback" not in err

    def test_missing_module(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code, _, err = run_cli(
            capsys, "worker", "no_such_app_module:pulse", "--app-dir", app_dir
        )

        assert code == 1
        assert "cannot import app module 'no_such_app_module'" in err
        assert "Traceback" not in err

    def test_missing_attribute(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (app_dir / "app_without_queue.py").write_text("x = 1\n")

        code, _, err = run_cli(
            capsys, "worker", "app_without_queue:pulse", "--app-dir", app_dir
        )

        assert code == 1
        assert "has no attribute 'pulse'" in err
        assert "Traceback" not in err

    def test_attribute_not_a_queue(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (app_dir / "app_with_number.py").write_text("pulse = 42\n")

        code, _, err = run_cli(
            capsys, "worker", "app_with_number:pulse", "--app-dir", app_dir
        )

        assert code == 1
        assert "is a int, not a Pulse" in err

    def test_factory_returning_other_value(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (app_dir / "app_factory_none.py").write_text("async def make():\n    pass\n")

        code, _, err = run_cli(
            capsys, "worker", "app_factory_none:make", "--app-dir", app_dir
        )

        assert code == 1
        assert "returned a NoneType, not a Pulse" in err

    def test_error_in_app_shows_its_traceback(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (app_dir / "app_that_raises.py").write_text(
            "def make():\n    raise RuntimeError('settings file is missing')\n"
        )

        code, _, err = run_cli(
            capsys, "worker", "app_that_raises:make", "--app-dir", app_dir
        )

        assert code == 1
        assert "calling 'app_that_raises:make' to create the queue failed" in err
        assert "Traceback (most recent call last)" in err
        assert "RuntimeError: settings file is missing" in err

    def test_queue_that_cannot_run(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (app_dir / "app_inline.py").write_text(
            "from pulse_trio import Pulse\n"
            "def make():\n"
            "    return Pulse.in_memory(inline=True)\n"
        )

        code, _, err = run_cli(
            capsys, "worker", "app_inline:make", "--app-dir", app_dir
        )

        assert code == 1
        assert "an inline queue runs each job inside enqueue()" in err
        assert "Traceback" not in err

    def test_broken_import_inside_app_shows_traceback(
        self, app_dir: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        (app_dir / "app_bad_import.py").write_text("import no_such_dependency\n")

        code, _, err = run_cli(
            capsys, "worker", "app_bad_import:x", "--app-dir", app_dir
        )

        assert code == 1
        assert "importing app module 'app_bad_import' failed" in err
        assert "No module named 'no_such_dependency'" in err


# -- worker: processes --------------------------------------------------------


APP_MODULE = textwrap.dedent(
    """
    import os
    import sys
    import time

    import trio

    from pulse_trio import Pulse


    async def make_pulse():
        pulse = await Pulse.new(os.environ["TEST_DATABASE"], workers=2)

        async def greet(name):
            with open(os.environ["TEST_OUTPUT"], "a") as output:
                output.write(f"hello {name}\\n")

        async def hang(_):
            await trio.sleep_forever()

        def block(seconds):
            time.sleep(seconds)

        def leave(code):
            sys.exit(code)

        pulse.handle("block", block)
        pulse.handle("greet", greet)
        pulse.handle("hang", hang)
        pulse.handle("leave", leave)
        return pulse
    """
)

STARTUP_TIMEOUT = 30.0
"""Real seconds a child gets to print an expected line or to exit."""


class Child:
    """A ``python -m pulse_trio`` process, with its stderr collected."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.stderr = b""

    async def collect(self, stream: trio.abc.ReceiveStream) -> None:
        async for chunk in stream:
            self.stderr += chunk

    async def wait_for_stderr(self, text: str) -> None:
        with trio.fail_after(STARTUP_TIMEOUT):
            while text.encode() not in self.stderr:
                if self.process.returncode is not None:
                    raise AssertionError(f"exited first; stderr:\n{self.text}")
                await trio.sleep(0.02)

    async def wait(self) -> int:
        with trio.fail_after(STARTUP_TIMEOUT):
            return await self.process.wait()

    @property
    def text(self) -> str:
        return self.stderr.decode(errors="replace")


async def start_child(
    nursery: trio.Nursery, args: list[str], cwd: Path, env: dict[str, str]
) -> Child:
    process = await trio.lowlevel.open_process(
        [sys.executable, "-m", "pulse_trio", *args],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    child = Child(process)
    assert process.stderr is not None
    assert process.stdout is not None
    nursery.start_soon(child.collect, process.stderr)
    return child


@pytest.fixture
def worker_env(tmp_path: Path) -> dict[str, str]:
    (tmp_path / "jobs_app.py").write_text(APP_MODULE)
    env = {
        "PATH": "/usr/bin:/bin",
        "TEST_DATABASE": str(tmp_path / "jobs.db"),
        "TEST_OUTPUT": str(tmp_path / "output.txt"),
    }
    return env


async def open_test_queue(env: dict[str, str]) -> Pulse:
    return await Pulse.new(env["TEST_DATABASE"], workers=1)


async def wait_for_job(pulse: Pulse, job_id: str, status: JobStatus) -> None:
    with trio.fail_after(STARTUP_TIMEOUT):
        while (await pulse.status(job_id)).status is not status:
            await trio.sleep(0.02)


WORKER_ARGS = ["worker", "jobs_app:make_pulse", "--log-level", "info"]


@pytest.mark.processes
class TestWorkerProcess:
    async def test_sigterm_exits_zero_after_jobs(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        ids = await pulse.enqueue_many("greet", ["ada", "grace"])
        async with trio.open_nursery() as nursery:
            child = await start_child(
                nursery, [*WORKER_ARGS, "--workers", "3"], tmp_path, worker_env
            )
            await child.wait_for_stderr("worker started")
            for job_id in ids:
                await wait_for_job(pulse, job_id, JobStatus.COMPLETED)
            child.process.send_signal(signal.SIGTERM)
            code = await child.wait()
        pulse.close()

        assert code == 0, child.text
        output = (tmp_path / "output.txt").read_text().splitlines()
        assert sorted(output) == ["hello ada", "hello grace"]
        assert f"on database {worker_env['TEST_DATABASE']} (workers: 3)" in child.text
        assert "for jobs: block, greet, hang, leave" in child.text
        assert "received SIGTERM: shutting down gracefully" in child.text
        assert "worker stopped" in child.text

    async def test_second_signal_stops_at_once(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        job_id = await pulse.enqueue("hang")
        args = [*WORKER_ARGS, "--shutdown-timeout", "10m"]
        async with trio.open_nursery() as nursery:
            child = await start_child(nursery, args, tmp_path, worker_env)
            await wait_for_job(pulse, job_id, JobStatus.RUNNING)
            child.process.send_signal(signal.SIGINT)
            await child.wait_for_stderr("received SIGINT: shutting down gracefully")
            child.process.send_signal(signal.SIGTERM)
            code = await child.wait()
        job = await pulse.status(job_id)
        pulse.close()

        assert code == 0, child.text
        assert "received SIGTERM again: cancelling running jobs now" in child.text
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0

    async def test_third_signal_leaves_thread_behind(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        job_id = await pulse.enqueue("block", 600)
        async with trio.open_nursery() as nursery:
            child = await start_child(nursery, WORKER_ARGS, tmp_path, worker_env)
            await wait_for_job(pulse, job_id, JobStatus.RUNNING)
            child.process.send_signal(signal.SIGINT)
            await child.wait_for_stderr("received SIGINT: shutting down gracefully")
            child.process.send_signal(signal.SIGINT)
            await child.wait_for_stderr("received SIGINT again: cancelling")
            child.process.send_signal(signal.SIGINT)
            code = await child.wait()
        running = await pulse.status(job_id)
        recovered = await pulse.recover()
        job = await pulse.status(job_id)
        pulse.close()

        assert code == 130, child.text
        assert "received SIGINT a third time: exiting now" in child.text
        assert running.status is JobStatus.RUNNING
        assert recovered == [job_id]
        assert job.status is JobStatus.PENDING
        assert job.attempts == 1

    async def test_shutdown_timeout_cancels_running_job(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        job_id = await pulse.enqueue("hang")
        args = [*WORKER_ARGS, "--shutdown-timeout", "0.2"]
        async with trio.open_nursery() as nursery:
            child = await start_child(nursery, args, tmp_path, worker_env)
            await wait_for_job(pulse, job_id, JobStatus.RUNNING)
            child.process.send_signal(signal.SIGTERM)
            code = await child.wait()
        job = await pulse.status(job_id)
        pulse.close()

        assert code == 0, child.text
        assert job.status is JobStatus.PENDING
        assert job.attempts == 0

    async def test_system_exit_in_handler_sets_exit_code(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        await pulse.enqueue("leave", 3)
        pulse.close()
        async with trio.open_nursery() as nursery:
            child = await start_child(nursery, WORKER_ARGS, tmp_path, worker_env)
            code = await child.wait()

        assert code == 3, child.text
        assert "Traceback" not in child.text

    async def test_closed_pipe_exits_quietly(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        # Far more output than a pipe buffers, so the child cannot finish
        # writing before the pipe is closed.
        await pulse.enqueue_many("greet", list(range(2000)))
        pulse.close()
        args = ["jobs", worker_env["TEST_DATABASE"], "--limit", "5000"]
        async with trio.open_nursery() as nursery:
            child = await start_child(nursery, args, tmp_path, worker_env)
            assert child.process.stdout is not None
            await child.process.stdout.aclose()  # as `| head -0` would
            code = await child.wait()

        assert code == 141
        assert child.text == ""

    async def test_watch_refreshes_until_ctrl_c(
        self, tmp_path: Path, worker_env: dict[str, str]
    ) -> None:
        pulse = await open_test_queue(worker_env)
        await pulse.enqueue("greet", "ada")
        pulse.close()
        args = ["stats", worker_env["TEST_DATABASE"], "--json", "--watch", "0.1"]
        async with trio.open_nursery() as nursery:
            child = await start_child(nursery, args, tmp_path, worker_env)
            assert child.process.stdout is not None
            received = b""
            with trio.fail_after(STARTUP_TIMEOUT):
                async for chunk in child.process.stdout:
                    received += chunk
                    if received.count(b"\n") >= 3:
                        break
            child.process.send_signal(signal.SIGINT)
            code = await child.wait()

        assert code == 0, child.text
        lines = received.decode().splitlines()
        for line in lines[:3]:
            assert json.loads(line)["by_status"]["pending"] == 1


# -- the docs -----------------------------------------------------------------


def load_check_script(folder: Path) -> Any:
    """Write the alert script of the monitoring page to *folder*, and
    return its ``check`` function."""
    page = (DOCS / "monitoring.md").read_text()
    match = re.search(r"```python\n(# check_queue\.py\n.*?)^```$", page, re.M | re.S)
    assert match, "monitoring.md has no check_queue.py block"
    script = folder / "check_queue.py"
    script.write_text(match.group(1))
    return runpy.run_path(str(script))["check"]


LIVE_QUEUE_SECONDS = 60
"""Real seconds a queue may take to drain and be checked by the script."""


def check_with_live_queue(
    path: Path, handlers: dict[str, Any], check: Any, max_wait: float = 300.0
) -> tuple[int, str]:
    """Run a queue with *handlers* on *path* until no job is due, then
    return the result of *check* while the queue still runs."""

    async def run() -> tuple[int, str]:
        pulse = await Pulse.new(path, workers=1)
        try:
            for name, handler in handlers.items():
                pulse.handle(name, handler)
            with trio.fail_after(LIVE_QUEUE_SECONDS):
                async with pulse:
                    await pulse.drain()
                    return await trio.to_thread.run_sync(check, str(path), max_wait)
        finally:
            pulse.close()

    return trio.run(run)


@pytest.mark.processes
class TestMonitoringScript:
    @pytest.mark.parametrize(
        ("dead", "expected"),
        [(1, "CRITICAL: 1 dead job"), (2, "CRITICAL: 2 dead jobs")],
    )
    def test_dead_jobs_are_critical(
        self, dead: int, expected: str, tmp_path: Path
    ) -> None:
        path = tmp_path / "dead.db"
        config = JobConfig.no_retry()
        make_database(
            path, lambda pulse: pulse.enqueue_many("charge", range(dead), config)
        )
        check = load_check_script(tmp_path)

        status, message = check_with_live_queue(path, {"charge": fail}, check)

        assert status == 2
        assert message == expected

    def test_healthy_queue_is_ok(self, tmp_path: Path) -> None:
        path = tmp_path / "healthy.db"
        make_database(path, lambda pulse: pulse.enqueue("report", 1))
        check = load_check_script(tmp_path)

        status, message = check_with_live_queue(path, {"report": succeed}, check)

        assert status == 0
        assert message == "OK: 0 pending, 1 completed in the last hour, 1 live queue"

    def test_no_live_queue_is_critical(self, tmp_path: Path) -> None:
        path = tmp_path / "stopped.db"
        make_database(path, lambda pulse: pulse.enqueue("report", 1))
        check = load_check_script(tmp_path)

        status, message = check(str(path), 300.0)

        assert status == 2
        assert message == "CRITICAL: no live queue runs on the database"

    def test_unhandled_name_is_critical(self, tmp_path: Path) -> None:
        path = tmp_path / "unhandled.db"

        async def setup(pulse: Pulse) -> None:
            await pulse.enqueue("report", 1)
            await pulse.enqueue_many("resize", [640, 320])

        make_database(path, setup)
        check = load_check_script(tmp_path)

        status, message = check_with_live_queue(path, {"report": succeed}, check)

        assert status == 2
        assert message == "CRITICAL: no live queue handles resize (2 due)"

    def test_long_wait_is_critical(self, tmp_path: Path) -> None:
        path = tmp_path / "slow.db"
        make_database(path, lambda pulse: pulse.enqueue("report", 1))
        check = load_check_script(tmp_path)

        status, message = check(str(path), -1.0)

        assert status == 2
        assert message.startswith("CRITICAL: the oldest due job has waited")

    def test_missing_database_is_unknown(self, tmp_path: Path) -> None:
        check = load_check_script(tmp_path)

        status, message = check(str(tmp_path / "missing.db"), 300.0)

        assert status == 3
        assert message.startswith("UNKNOWN: pulse-trio: error: no database file")


def parser_commands(parser: argparse.ArgumentParser) -> dict[str, Any]:
    """Return the parser of each command of *parser*, by name."""
    choices = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert isinstance(choices, dict)
    return choices


@pytest.mark.parametrize(
    ("argv", "command"),
    [
        (["jobs", "{db}", "--bogus"], "jobs"),
        (["enqueue", "{db}", "report", "-1e3"], "enqueue"),
    ],
    ids=["unknown-option", "negative-payload"],
)
def test_unknown_argument_shows_command_usage(
    argv: list[str],
    command: str,
    database: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, err = run_cli(capsys, *[arg.format(db=database) for arg in argv])

    assert code == 2
    assert out == ""
    assert err.startswith(f"usage: pulse-trio {command} ")
    assert f"pulse-trio {command}: error: unrecognized arguments: " in err


def test_every_command_has_an_implementation() -> None:
    assert set(COMMANDS) == set(parser_commands(build_parser()))


def test_reference_lists_every_option() -> None:
    reference = (DOCS / "cli.md").read_text()
    parser = build_parser()

    for name, command in parser_commands(parser).items():
        assert f"## `{name}`" in reference, name
        for action in command._actions:
            for option in action.option_strings:
                if option not in ("-h", "--help"):
                    assert f"`{option}" in reference, f"{name} {option}"
    for action in parser._actions:
        for option in action.option_strings:
            if option not in ("-h", "--help"):
                assert f"`{option}" in reference, option
