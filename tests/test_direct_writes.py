"""Writes of a queue that does not run: failures, timeouts and events.

These tests cover the path where each caller commits by itself (no
persistence actor runs), and callers that arrive together share one
transaction and, under synchronous="FULL", one sync of the WAL file.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import DatabaseError, EventKind, JobEvent, Pulse, _persistence
from pulse_trio._messages import Insert, Reply

OpenQueue = Callable[..., Awaitable[Pulse]]


@pytest.mark.parametrize("operation", ["delete", "retry", "recover"])
async def test_failed_write_raises_database_error(
    open_file_queue: OpenQueue,
    database_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    operation: str,
) -> None:
    # Another connection holds the write lock past the retry limit, so the
    # transaction fails and nothing is stored.
    monkeypatch.setattr(_persistence, "BUSY_RETRY_LIMIT", 0.0)
    pulse = await open_file_queue()
    job_id = await pulse.enqueue("later", 1)
    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "delete": lambda: pulse.delete(job_id),
        "retry": lambda: pulse.retry(job_id),
        "recover": pulse.recover,
    }
    holder = sqlite3.connect(database_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseError, match="database is locked"):
            await calls[operation]()
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    job = await pulse.status(job_id)
    assert job.status.value == "pending"


async def test_failed_write_logs_no_enqueue(
    open_file_queue: OpenQueue,
    database_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(_persistence, "BUSY_RETRY_LIMIT", 0.0)
    pulse = await open_file_queue()
    holder = sqlite3.connect(database_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    caplog.set_level("DEBUG", logger="pulse_trio")
    try:
        with pytest.raises(DatabaseError):
            await pulse.enqueue("later", 1)
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    messages = [record.getMessage() for record in caplog.records]
    enqueued = [text for text in messages if text.endswith(": enqueued")]
    assert enqueued == []
    assert await pulse.list_jobs() == []


async def test_shared_commit_honours_caller_timeout(
    open_file_queue: OpenQueue, database_path: Path
) -> None:
    # Two callers share one transaction while another connection holds the
    # write lock for 60 s. Each caller's timeout must end its wait, even
    # for the caller that commits for both.
    pulse = await open_file_queue()
    holder = sqlite3.connect(database_path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    ended_at: dict[str, float] = {}

    async def enqueue_with_timeout(label: str) -> None:
        start = trio.current_time()
        with trio.move_on_after(1):
            await pulse.enqueue("later", label)
        ended_at[label] = trio.current_time() - start

    async def release_lock_later() -> None:
        await trio.sleep(60)
        holder.execute("COMMIT")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(release_lock_later)
        nursery.start_soon(enqueue_with_timeout, "first")
        nursery.start_soon(enqueue_with_timeout, "second")
    holder.close()

    assert ended_at["first"] < 2
    assert ended_at["second"] < 2


async def test_full_cancelled_delete_sends_event(
    open_file_queue: OpenQueue, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The caller's deadline passes while its transaction commits, so the
    # cancellation arrives before the sync. The job is deleted all the
    # same, and listeners must hear of it.
    pulse = await open_file_queue(synchronous="FULL")
    job_id = await pulse.enqueue("later", 1)
    events: list[JobEvent] = []
    pulse.add_listener(events.append)
    scope = trio.CancelScope()
    real_commit = pulse._store.commit

    def commit_then_cancel() -> None:
        real_commit()
        scope.cancel()

    monkeypatch.setattr(pulse._store, "commit", commit_then_cancel)
    with scope:
        await pulse.delete(job_id)
    monkeypatch.undo()

    assert scope.cancelled_caught
    assert await pulse.list_jobs() == []
    deleted = [event.job_id for event in events if event.kind is EventKind.DELETED]
    assert deleted == [job_id]


async def test_request_that_raises_leaves_others_stored(
    open_file_queue: OpenQueue,
) -> None:
    # A row that SQLite cannot bind raises a Python error, not a database
    # error, in the middle of a shared transaction. The requests of the
    # other callers go back to them, and they store their rows by themselves.
    pulse = await open_file_queue()
    good = [
        (f"good-{index}", "later", "1", "pending", 1, 3, 0, 0, None, 1, 1)
        for index in range(3)
    ]
    bad = ("bad", "later", "1", "pending", 2**70, 3, 0, 0, None, 1, 1)
    outcomes: dict[str, str] = {}

    async def send(row: tuple[Any, ...]) -> None:
        reply: Reply[None] = Reply()
        message = Insert(name="later", rows=(row,), due_now=True, reply=reply)
        try:
            await pulse._persistence.submit(message)
            await reply.wait()
        except OverflowError:
            outcomes[row[0]] = "OverflowError"
        else:
            outcomes[row[0]] = "stored"

    async with trio.open_nursery() as nursery:
        for row in [bad, *good]:
            nursery.start_soon(send, row)

    assert outcomes == {
        "bad": "OverflowError",
        "good-0": "stored",
        "good-1": "stored",
        "good-2": "stored",
    }
    assert sorted(job.id for job in await pulse.list_jobs()) == [
        "good-0",
        "good-1",
        "good-2",
    ]


async def test_full_syncs_after_working_folder_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The database was opened by a relative path; the WAL file to sync is
    # still the one next to it after the program changes folder.
    (tmp_path / "app").mkdir()
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "app")
    pulse = await Pulse.new("queue.db", synchronous="FULL")
    monkeypatch.chdir(tmp_path / "elsewhere")
    synced: list[int] = []
    real_fsync = os.fsync

    def recording_fsync(fd: int) -> None:
        synced.append(fd)
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", recording_fsync)

    await pulse.enqueue("later", 1)
    pulse.close()

    assert synced
    assert not (tmp_path / "elsewhere" / "queue.db").exists()
