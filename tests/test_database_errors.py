"""Broken databases and environments: clear errors, and nothing stored lost.

Read-only files and folders are made with ``chattr +i``, because the tests
may run as root, whom permission bits do not stop. A full disk is a small
tmpfs mounted for the test; where mounting is not allowed, SQLite's
``PRAGMA max_page_count`` caps the file instead.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trio

from pulse_trio import (
    DatabaseError,
    EventKind,
    JobEvent,
    JobNotFound,
    JobStatus,
    Pulse,
    SchemaTooNew,
    _persistence,
)

from .helpers import read_file_rows, wait_finished


@contextlib.contextmanager
def immutable(path: Path) -> Iterator[None]:
    """Make *path* immutable for the block, or skip the test if impossible."""
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("chattr is not installed, so no read-only file can be made")
    result = subprocess.run([chattr, "+i", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(f"chattr +i failed ({result.stderr.decode().strip()})")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


async def make_queue_file(path: Path, payloads: list[str]) -> list[str]:
    """Create a queue database storing one pending job per payload."""
    pulse = await Pulse.new(path)
    ids = await pulse.enqueue_many("record", payloads)
    pulse.close()
    return ids


def stored_payloads(path: Path) -> list[str]:
    rows = read_file_rows(path, "SELECT payload FROM pulse_jobs ORDER BY seq")
    return [row["payload"] for row in rows]


async def test_missing_folder_rejected(tmp_path: Path) -> None:
    path = tmp_path / "no-such-folder" / "queue.db"

    with pytest.raises(
        DatabaseError,
        match=r"cannot open database '.*no-such-folder/queue\.db': folder "
        r"'.*no-such-folder' does not exist; create it first",
    ):
        await Pulse.new(path)

    assert not path.parent.exists()


async def test_read_only_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_queue_file(path, ["kept"])
    before = path.read_bytes()

    with (
        immutable(path),
        pytest.raises(
            DatabaseError,
            match=r"cannot open database '.*queue\.db': the file is read-only; "
            r"pulse-trio writes to every database it opens, so make it writable",
        ),
    ):
        await Pulse.new(path)

    assert path.read_bytes() == before
    assert stored_payloads(path) == ['"kept"']


@pytest.mark.parametrize("suffix", ["-wal", "-shm"])
async def test_read_only_wal_or_shm_file_rejected(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / "queue.db"
    await make_queue_file(path, ["kept"])
    # Such a file is left behind when a tool run as another user had the
    # database open.
    extra = tmp_path / f"queue.db{suffix}"
    extra.write_bytes(b"")

    with (
        immutable(extra),
        pytest.raises(
            DatabaseError,
            match=rf"cannot open database '.*queue\.db': its file "
            rf"'.*queue\.db{suffix}' is read-only; make it writable",
        ),
    ):
        await Pulse.new(path)

    extra.unlink()
    assert stored_payloads(path) == ['"kept"']


async def test_read_only_folder_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "queues"
    folder.mkdir()
    path = folder / "queue.db"
    await make_queue_file(path, ["kept"])

    with immutable(folder):
        with pytest.raises(
            DatabaseError,
            match=r"cannot open database '.*queue\.db': folder '.*queues' is not "
            r"writable; SQLite creates the -wal and -shm files next to the "
            r"database, so make the folder writable",
        ):
            await Pulse.new(path)
        with pytest.raises(DatabaseError, match=r"folder '.*queues' is not writable"):
            await Pulse.new(folder / "new.db")

    assert stored_payloads(path) == ['"kept"']
    assert not (folder / "new.db").exists()


async def test_file_not_sqlite_rejected(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    text = "these are notes, not a database\n" * 200
    path.write_text(text)

    with pytest.raises(
        DatabaseError,
        match=r"cannot use '.*notes\.txt' as a pulse-trio database: file is not a "
        r"database; is it an SQLite file\?",
    ):
        await Pulse.new(path)

    assert path.read_text() == text


async def test_corrupted_file_rejected(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_queue_file(path, [f"job {index}" for index in range(200)])
    data = bytearray(path.read_bytes())
    # Keep the 100-byte header, so SQLite recognises the file, and damage
    # the schema table on page 1 and every page after it.
    for index in range(100, len(data)):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))

    with pytest.raises(
        DatabaseError,
        match=r"'.*queue\.db'.*database disk image is malformed; the file is "
        r"damaged: restore it from a backup",
    ):
        await Pulse.new(path)

    assert path.read_bytes() == bytes(data)


async def test_damaged_jobs_table_reported(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_queue_file(path, ["x" * 3000 for _ in range(100)])
    data = bytearray(path.read_bytes())
    page_size = int.from_bytes(data[16:18], "big")
    # Damage only pages past the schema, where the job rows live.
    for index in range(4 * page_size, len(data)):
        data[index] ^= 0x5A
    path.write_bytes(bytes(data))
    pulse = await Pulse.new(path)  # the schema itself is intact

    with pytest.raises(
        DatabaseError,
        match=r"reading '.*queue\.db' failed: database disk image is malformed; "
        r"the file is damaged: restore it from a backup",
    ):
        await pulse.list_jobs()
    with pytest.raises(DatabaseError, match=r"database disk image is malformed"):
        await pulse.enqueue("record", "new")
    pulse.close()


async def test_newer_schema_refused(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    await make_queue_file(path, ["kept"])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('pulse_trio', '0099_from_a_newer_release', '2030-01-01')"
        )
    conn.close()
    before = read_file_rows(path, "SELECT * FROM _sqlite_migrations ORDER BY id")

    with pytest.raises(
        SchemaTooNew,
        match=r"database '.*queue\.db' has schema changes this version of "
        r"pulse-trio does not know \(0099_from_a_newer_release\); it was written "
        r"by a newer pulse-trio, so upgrade pulse-trio to open it",
    ):
        await Pulse.new(path)

    after = read_file_rows(path, "SELECT * FROM _sqlite_migrations ORDER BY id")
    assert [tuple(row) for row in after] == [tuple(row) for row in before]
    assert stored_payloads(path) == ['"kept"']


async def test_other_migration_sets_ignored(tmp_path: Path) -> None:
    # Another library's migrations in the same file are not pulse-trio's.
    path = tmp_path / "queue.db"
    await make_queue_file(path, ["kept"])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute(
            "INSERT INTO _sqlite_migrations (migration_set, name, applied_at) "
            "VALUES ('someone_else', '0001_tables', '2030-01-01')"
        )
    conn.close()

    pulse = await Pulse.new(path)
    assert [job.payload for job in await pulse.list_jobs()] == ["kept"]
    pulse.close()


# -- durability modes -------------------------------------------------------


@pytest.mark.parametrize(
    ("mode", "durable"),
    [("NORMAL", False), ("FULL", True), ("normal", False), ("full", True)],
)
async def test_synchronous_mode_set_on_store(
    tmp_path: Path, mode: str, durable: bool
) -> None:
    pulse = await Pulse.new(tmp_path / "queue.db", synchronous=mode)  # type: ignore[arg-type]
    conn = pulse._store.conn

    # Both modes commit at NORMAL; FULL adds a sync of the WAL file before
    # any outcome is reported.
    assert conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert pulse._store.durable is durable
    pulse.close()


class SyncRecorder:
    """Stands in for ``Store.sync`` and records what each sync covered.

    After each real sync it reads, on a connection of its own, which jobs
    the database then held and which were completed, so a test can check
    that an outcome was reported only after a sync that covered it.
    """

    def __init__(self, pulse: Pulse, path: Path) -> None:
        self.real_sync = pulse._store.sync
        self.path = path
        self.syncs = 0
        self.stored: set[str] = set()
        self.completed: set[str] = set()

    def __call__(self) -> None:
        self.real_sync()
        self.syncs += 1
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            for job_id, status in conn.execute("SELECT id, status FROM pulse_jobs"):
                self.stored.add(job_id)
                if status == "completed":
                    self.completed.add(job_id)


@pytest.mark.parametrize("running", [True, False], ids=["running", "not-running"])
async def test_full_enqueue_returns_after_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, running: bool
) -> None:
    path = tmp_path / "queue.db"
    pulse = await Pulse.new(path, synchronous="FULL")
    recorder = SyncRecorder(pulse, path)
    monkeypatch.setattr(pulse._store, "sync", recorder)

    async with contextlib.AsyncExitStack() as stack:
        if running:
            await stack.enter_async_context(pulse)
        ids = [await pulse.enqueue("work", index) for index in range(3)]
        ids += await pulse.enqueue_many("work", range(3))

        assert set(ids) <= recorder.stored
    assert recorder.syncs >= 1
    pulse.close()


async def test_full_reports_completion_after_sync(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "queue.db"
    pulse = await Pulse.new(path, synchronous="FULL", workers=2)
    recorder = SyncRecorder(pulse, path)
    monkeypatch.setattr(pulse._store, "sync", recorder)
    reported: list[str] = []
    unsynced_reports: list[str] = []

    def listener(event: JobEvent) -> None:
        if event.kind is EventKind.COMPLETED:
            reported.append(event.job_id)
            if event.job_id not in recorder.completed:
                unsynced_reports.append(event.job_id)

    async def work(payload: object) -> None:
        await trio.sleep(0)

    pulse.add_listener(listener)
    pulse.handle("work", work)
    ids = await pulse.enqueue_many("work", range(20))
    async with pulse:
        finished = [await pulse.wait(job_id) for job_id in ids]
        await pulse.drain()

    assert sorted(reported) == sorted(ids)
    assert unsynced_reports == []
    assert all(job.status is JobStatus.COMPLETED for job in finished)
    assert set(ids) <= recorder.completed
    pulse.close()


async def poke_with_deletes(pulse: Pulse, times: int) -> None:
    """Send delete() requests one after the other, each bounded in time."""
    for _ in range(times):
        with trio.fail_after(5), contextlib.suppress(JobNotFound):
            await pulse.delete("no-such-job")


async def test_full_request_while_stopping_gets_reply(tmp_path: Path) -> None:
    # A request sent while run() finishes is applied by its sender, after
    # the actor's last sync; its reply must still come.
    for round_number in range(10):
        pulse = await Pulse.new(
            tmp_path / f"queue{round_number}.db", synchronous="FULL"
        )
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            nursery.start_soon(poke_with_deletes, pulse, 50)
            await trio.sleep(0)
            await pulse.shutdown_graceful()
        pulse.close()


def test_full_syncs_do_not_wait_for_handler_threads(tmp_path: Path) -> None:
    # Plain-function handlers hold every token of trio's default thread
    # limiter while they wait for an enqueue, whose reply needs a sync in a
    # thread of the queue's own. It runs on the real clock, where a
    # deadlock ends at the deadline: under a MockClock, virtual time stands
    # still while handler threads run.
    async def main() -> None:
        trio.to_thread.current_default_thread_limiter().total_tokens = 2
        pulse = await Pulse.new(tmp_path / "queue.db", synchronous="FULL", workers=3)
        follow_ups: list[str] = []

        def enqueue_follow_up(payload: object) -> None:
            follow_ups.append(trio.from_thread.run(pulse.enqueue, "follow_up"))

        pulse.handle("work", enqueue_follow_up)
        ids = await pulse.enqueue_many("work", range(6))
        with trio.fail_after(30):
            async with pulse:
                finished = [await pulse.wait(job_id) for job_id in ids]

        assert [job.status for job in finished] == [JobStatus.COMPLETED] * 6
        assert len(follow_ups) == 6
        pulse.close()

    trio.run(main)


async def test_full_wait_skips_needless_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "queue.db"
    pulse = await Pulse.new(path, synchronous="FULL")
    pulse.handle("work", lambda payload: None)
    ids = await pulse.enqueue_many("work", range(5))
    async with pulse:
        await pulse.drain()
    syncs: list[int] = []
    real_sync = pulse._store.sync

    def counting_sync() -> None:
        syncs.append(1)
        real_sync()

    monkeypatch.setattr(pulse._store, "sync", counting_sync)

    for job_id in ids:
        await pulse.wait(job_id)
    after_waits = len(syncs)
    # A commit by another connection may not be synced yet, so the next
    # wait() syncs again.
    other = sqlite3.connect(path)
    with other:
        other.execute("CREATE TABLE unrelated (value INTEGER)")
    other.close()
    await pulse.wait(ids[0])

    assert after_waits <= 1
    assert len(syncs) == after_waits + 1
    pulse.close()


async def test_normal_mode_never_syncs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "queue.db"
    pulse = await Pulse.new(path)
    syncs: list[int] = []
    monkeypatch.setattr(pulse._store, "sync", lambda: syncs.append(1))
    pulse.handle("work", lambda payload: None)
    job_id = await pulse.enqueue("work")
    async with pulse:
        await pulse.wait(job_id)

    assert syncs == []
    pulse.close()


async def test_running_queue_keeps_wal_file_bounded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Checkpoints run in a thread while the queue runs. A checkpoint that
    # overlapped commits never let SQLite start the WAL file over, and it
    # grew by every commit; the actor now pauses its commits for one.
    monkeypatch.setattr(_persistence, "FIRST_CHECKPOINT", 50)
    monkeypatch.setattr(_persistence, "CHECKPOINT_FRAMES", 200)
    path = tmp_path / "queue.db"
    pulse = await Pulse.new(path)
    wal = tmp_path / "queue.db-wal"
    sizes: list[int] = []
    async with pulse:
        for index in range(2000):
            await pulse.enqueue("later", index)
            if index % 100 == 99:
                sizes.append(wal.stat().st_size)

    page = 4096 + 24  # a WAL frame: one page and its header
    assert max(sizes) < 600 * page, sizes
    assert pulse._persistence._committed >= 2000
    pulse.close()


async def test_default_synchronous_is_normal(tmp_path: Path) -> None:
    pulse = await Pulse.new(tmp_path / "queue.db")

    assert pulse._store.conn.execute("PRAGMA synchronous").fetchone()[0] == 1
    pulse.close()


# -- a full disk ------------------------------------------------------------

SMALL_DISK_BYTES = 1024 * 1024
PAYLOAD = "p" * 20_000


@contextlib.contextmanager
def small_disk(folder: Path) -> Iterator[Path]:
    """Mount a tmpfs of :data:`SMALL_DISK_BYTES` at *folder*, or skip."""
    folder.mkdir()
    mount = shutil.which("mount")
    if mount is None:
        pytest.skip("mount is not installed")
    result = subprocess.run(
        [mount, "-t", "tmpfs", "-o", f"size={SMALL_DISK_BYTES}", "tmpfs", str(folder)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {result.stderr.decode().strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=True)


def fill_disk(folder: Path, leave: int) -> Path:
    """Fill the disk at *folder* with one file, leaving about *leave* bytes."""
    filler = folder / "filler"
    usage = shutil.disk_usage(folder)
    filler.write_bytes(b"\0" * max(usage.free - leave, 0))
    return filler


async def enqueue_until_full(pulse: Pulse) -> tuple[list[str], DatabaseError]:
    stored = []
    for _ in range(1000):
        try:
            stored.append(await pulse.enqueue("record", PAYLOAD))
        except DatabaseError as exc:
            return stored, exc
    raise AssertionError("the disk never filled up")


async def test_disk_full_write_fails_cleanly(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "queue.db"
        pulse = await Pulse.new(path)
        runs: list[str] = []

        async def record(payload: str) -> None:
            runs.append(payload)

        pulse.handle("record", record)
        first = await pulse.enqueue("record", "before")
        filler = fill_disk(disk, leave=200_000)
        stored, error = await enqueue_until_full(pulse)

        assert "database or disk is full" in str(error)
        assert str(path) in str(error)
        # The failed enqueue stored nothing, and every earlier one is kept.
        rows = read_file_rows(path, "SELECT id FROM pulse_jobs ORDER BY seq")
        assert [row["id"] for row in rows] == [first, *stored]
        with pytest.raises(DatabaseError, match=r"database or disk is full"):
            await pulse.enqueue_many("record", [PAYLOAD] * 20)
        assert len(read_file_rows(path, "SELECT id FROM pulse_jobs")) == len(rows)

        filler.unlink()
        after = await pulse.enqueue("record", "after")
        async with pulse:
            jobs = await wait_finished(pulse, [first, *stored, after])
        pulse.close()

    assert {job.status for job in jobs} == {JobStatus.COMPLETED}
    assert sorted(runs) == sorted(["before", "after", *[PAYLOAD] * len(stored)])


async def test_disk_full_while_running(tmp_path: Path) -> None:
    with small_disk(tmp_path / "disk") as disk:
        path = disk / "queue.db"
        pulse = await Pulse.new(path, workers=2)
        filler = disk / "filler"

        async def record(payload: str) -> None:
            if payload == "fill" and not filler.exists():
                fill_disk(disk, leave=0)
            await trio.sleep(1)

        pulse.handle("record", record)
        ids = await pulse.enqueue_many("record", ["fill", "a", "b", "c"])
        async with pulse:
            # The first runs end while the disk is full, so their results
            # cannot be written until space is back.
            await trio.sleep(5)
            filler.unlink()
            jobs = await wait_finished(pulse, ids, limit=600)
        pulse.close()

    assert [job.status for job in jobs] == [JobStatus.COMPLETED] * 4


async def test_page_limit_write_fails_cleanly(tmp_path: Path) -> None:
    # The same failure without a mount: SQLite's page cap on this connection.
    path = tmp_path / "queue.db"
    pulse = await Pulse.new(path)
    pulse.handle("record", _record_nothing)
    first = await pulse.enqueue("record", "before")
    conn = pulse._store.conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + 20}")
    stored, error = await enqueue_until_full(pulse)

    assert "database or disk is full" in str(error)
    rows = read_file_rows(path, "SELECT id FROM pulse_jobs ORDER BY seq")
    assert [row["id"] for row in rows] == [first, *stored]

    conn.execute("PRAGMA max_page_count = 4294967294")
    after = await pulse.enqueue("record", "after")
    async with pulse:
        jobs = await wait_finished(pulse, [first, *stored, after])
    pulse.close()
    assert {job.status for job in jobs} == {JobStatus.COMPLETED}


async def _record_nothing(payload: object) -> None:
    pass
