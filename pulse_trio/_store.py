"""The SQLite layer: connection, schema and the statements on jobs.

Every method is synchronous and short. The persistence actor calls the
writing methods inside one transaction per batch, and readers call the
others directly from the event loop, and they read only committed data because
no transaction stays open across an ``await``.
"""

from __future__ import annotations

import functools
import json
import os
import sqlite3
from collections.abc import (
    Callable,
    Collection,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

import sqlite_utils
from sqlite_utils.migrations import Migrations

from . import _sql
from ._errors import DatabaseError, SchemaTooNew

Synchronous = Literal["NORMAL", "FULL"]
Row = Mapping[str, Any]

# Seconds the connection itself waits for another process's write lock.
# Longer waits happen in the persistence actor with trio.sleep, so the event
# loop is never blocked for more than this.
BUSY_TIMEOUT = 0.005

# The WAL file's size, in pages, from which a checkpoint makes every writer
# wait until it can start the file over: 64 MiB with 4 KiB pages.
RESTART_FRAMES = 16_384

# Seconds a restarting checkpoint, in its worker thread, waits for the
# writers of other processes.
CHECKPOINT_BUSY_TIMEOUT = 1.0

# Bytes the WAL file is cut back to once it starts over.
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024

migrations = Migrations("pulse_trio")


class StoreBusy(DatabaseError):
    """Another connection holds a lock that opening the database needs.

    Switching a new file to WAL and applying migrations take the write
    lock, so :meth:`Store.open_file` raises this and the caller retries.
    """


def is_busy(exc: sqlite3.Error) -> bool:
    """Tell whether *exc* means that another connection holds a lock."""
    return getattr(exc, "sqlite_errorcode", None) in (
        sqlite3.SQLITE_BUSY,
        sqlite3.SQLITE_LOCKED,
    ) or "locked" in str(exc)


def _check_synchronous(synchronous: object) -> Synchronous:
    """Return *synchronous* in upper case, after checking it. SQLite's pragma
    accepts either case too."""
    if isinstance(synchronous, str) and synchronous.upper() in ("NORMAL", "FULL"):
        return "FULL" if synchronous.upper() == "FULL" else "NORMAL"
    raise ValueError(
        f"invalid synchronous mode {synchronous!r}; use 'NORMAL' or 'FULL'"
    )


def _raise_if_busy(exc: sqlite3.Error, description: str) -> None:
    if isinstance(exc, sqlite3.OperationalError) and is_busy(exc):
        raise StoreBusy(
            f"database {description!r} is locked by another connection: {exc}"
        ) from exc


@migrations(name="0001_jobs_and_owners")
def _create_schema(db: sqlite_utils.Database) -> None:
    db.table("pulse_jobs").create(
        {
            "seq": int,
            "id": str,
            "name": str,
            "payload": str,
            "status": str,
            "priority": int,
            "attempts": int,
            "max_retries": int,
            "retry_delay_us": int,
            "max_retry_delay_us": int,
            "timeout_us": int,
            "created_at": int,
            "run_at": int,
            "started_at": int,
            "finished_at": int,
            "last_error": str,
            "errors": str,
            "owner": str,
            "last_failed_at": int,
        },
        pk="seq",
        not_null={
            "id",
            "name",
            "payload",
            "status",
            "priority",
            "attempts",
            "max_retries",
            "retry_delay_us",
            "max_retry_delay_us",
            "created_at",
            "run_at",
            "errors",
        },
        defaults={"attempts": 0, "errors": "[]"},
    )
    db.table("pulse_jobs").create_index(["id"], unique=True, index_name="pulse_jobs_id")
    for statement in (
        _sql.CREATE_READY_INDEX,
        _sql.CREATE_FUTURE_INDEX,
        _sql.CREATE_RUNNING_INDEX,
        _sql.CREATE_FINISHED_INDEX,
        _sql.CREATE_FAILED_INDEX,
    ):
        db.execute(statement)
    db.table("pulse_owners").create(
        {
            "id": str,
            "host": str,
            "pid": int,
            "process_start": str,
            "started_at": int,
            "lease_until": int,
        },
        pk="id",
        not_null={"host", "pid", "started_at", "lease_until"},
    )


@migrations(name="0002_owner_namespace_and_names")
def _add_owner_details(db: sqlite_utils.Database) -> None:
    owners = db.table("pulse_owners")
    owners.add_column("pid_namespace", str)
    owners.add_column("handles", str)


def _run_order(row: Row) -> tuple[int, int, int]:
    return (-row["priority"], row["run_at"], row["seq"])


@functools.lru_cache(maxsize=_sql.CLAIM_NAMES_PER_QUERY)
def _claim_statement(name_count: int) -> str:
    return _sql.claim_due(name_count)


P = ParamSpec("P")
R = TypeVar("R")


def _damage_hint(exc: sqlite3.Error) -> str:
    if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_CORRUPT:
        return (
            "; the file is damaged: restore it from a backup, or save what is "
            "readable with the sqlite3 shell's .recover command"
        )
    return ""


def _reads(
    method: Callable[Concatenate[Store, P], R],
) -> Callable[Concatenate[Store, P], R]:
    """Report a failed read as :exc:`DatabaseError` naming the database.

    Inside a transaction the SQLite error passes unchanged, because the
    persistence actor decides by its type whether the whole batch fails.
    """

    def read(store: Store, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(store, *args, **kwargs)
        except sqlite3.DatabaseError as exc:
            if store.conn.in_transaction:
                raise
            raise DatabaseError(
                f"reading {store.description!r} failed: {exc}{_damage_hint(exc)}"
            ) from exc

    read.__name__ = method.__name__
    read.__doc__ = method.__doc__
    return read


class Store:
    """One SQLite connection holding the queue's tables."""

    def __init__(
        self, conn: sqlite3.Connection, description: str, *, durable: bool = False
    ) -> None:
        self.conn = conn
        self.description = description
        self.durable = durable
        """Whether commits must reach the disk before they are reported
        (``synchronous="FULL"``): see :meth:`sync`."""
        self._wal_fd: int | None = None
        # Resolved now: the program may change its working folder later,
        # and a relative path would then name another file.
        self._path = os.path.abspath(description)
        self._wal_path = f"{self._path}-wal"
        self._checkpoint_conn: sqlite3.Connection | None = None
        conn.row_factory = sqlite3.Row
        self.db = sqlite_utils.Database(conn, execute_plugins=False)

    # -- opening ---------------------------------------------------------

    @classmethod
    def open_file(
        cls,
        path: str | os.PathLike[str],
        synchronous: Synchronous,
        *,
        create: bool = True,
    ) -> Store:
        """Open or create the database file at *path*.

        With ``create=False`` the file must exist and hold a pulse-trio
        database; nothing is added to any other file.

        Raises:
            StoreBusy: Another connection holds a lock that opening needs;
                retry after a pause.
        """
        synchronous = _check_synchronous(synchronous)
        path = Path(path)
        if not create and not path.is_file():
            raise DatabaseError(
                f"database {str(path)!r} not found; check the path, or start the "
                "application once so that it creates the database"
            )
        if not path.parent.is_dir():
            raise DatabaseError(
                f"cannot open database {str(path)!r}: folder {str(path.parent)!r} "
                "does not exist; create it first"
            )
        # SQLite opens a file it cannot write read-only without telling, and
        # every later write would fail, so the check is made here. os.access
        # also detects an immutable attribute or a read-only mount.
        if path.exists() and not os.access(path, os.W_OK):
            raise DatabaseError(
                f"cannot open database {str(path)!r}: the file is read-only; "
                "pulse-trio writes to every database it opens, so make it writable "
                "(check its permissions, immutable attribute and mount)"
            )
        for suffix in ("-wal", "-shm"):
            # Left behind by another user, such as a tool run as root: SQLite
            # would open the database and fail at every write.
            extra = path.with_name(path.name + suffix)
            if extra.exists() and not os.access(extra, os.W_OK):
                raise DatabaseError(
                    f"cannot open database {str(path)!r}: its file {str(extra)!r} "
                    "is read-only; make it writable by this user, or remove it "
                    "once no program has the database open"
                )
        if not os.access(path.parent, os.W_OK):
            raise DatabaseError(
                f"cannot open database {str(path)!r}: folder {str(path.parent)!r} "
                "is not writable; SQLite creates the -wal and -shm files next to "
                "the database, so make the folder writable"
            )
        try:
            conn = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:
            raise DatabaseError(f"cannot open database {str(path)!r}: {exc}") from exc
        store = cls(conn, str(path), durable=synchronous == "FULL")
        try:
            # The schema is checked before anything is written, so a file
            # that is not a pulse-trio database stays as it was.
            pending = store._check_schema(create=create)
            # Commits run at NORMAL in both modes; under FULL the WAL file
            # is synced before their outcomes are reported (see sync()).
            store._configure(journal_mode="WAL", synchronous="NORMAL")
            # Checkpoints run in a worker thread instead (see checkpoint()).
            store.set_autocheckpoint(0)
            conn.execute(f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}")
            if pending:
                store._apply_migrations()
        except BaseException:
            conn.close()
            raise
        return store

    @classmethod
    def open_memory(cls) -> Store:
        """Open a private in-memory database."""
        conn = sqlite3.connect(
            ":memory:", isolation_level=None, check_same_thread=False
        )
        store = cls(conn, ":memory:")
        store._configure(journal_mode="MEMORY", synchronous="NORMAL")
        store._check_schema()
        store._apply_migrations()
        return store

    def _configure(self, journal_mode: str, synchronous: Synchronous) -> None:
        try:
            self.conn.execute(f"PRAGMA journal_mode = {journal_mode}")
            self.conn.execute(f"PRAGMA synchronous = {synchronous}")
            self.conn.execute("PRAGMA foreign_keys = ON")
        except sqlite3.DatabaseError as exc:
            _raise_if_busy(exc, self.description)
            hint = _damage_hint(exc) or "; is it an SQLite file?"
            raise DatabaseError(
                f"cannot use {self.description!r} as a pulse-trio database: {exc}{hint}"
            ) from exc

    def _check_schema(self, *, create: bool = True) -> bool:
        """Check, without writing, that this version can use the schema.

        Returns:
            Whether migrations are pending.
        """
        with self._schema_errors():
            applied = {m.name for m in migrations.applied(self.db)}
            if not create and not applied:
                raise DatabaseError(
                    f"{self.description!r} is not a pulse-trio database (it has "
                    "no pulse-trio tables); pass the file that the application "
                    "opens with Pulse.new()"
                )
            known = {
                m.name for m in migrations.pending(sqlite_utils.Database(memory=True))
            }
            unknown = sorted(applied - known)
            if unknown:
                raise SchemaTooNew(
                    f"database {self.description!r} has schema changes this version "
                    f"of pulse-trio does not know ({', '.join(unknown)}); it was "
                    "written by a newer pulse-trio, so upgrade pulse-trio to open it"
                )
            return bool(known - applied)

    def _apply_migrations(self) -> None:
        with self._schema_errors():
            # Another process may have applied them since the check.
            if migrations.pending(self.db):
                with self.write():
                    migrations.apply(self.db)

    @contextmanager
    def _schema_errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.DatabaseError as exc:
            _raise_if_busy(exc, self.description)
            if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_NOTADB:
                raise DatabaseError(
                    f"cannot use {self.description!r} as a pulse-trio database: "
                    f"{exc}; is it an SQLite file?"
                ) from exc
            raise DatabaseError(
                f"cannot read the schema of {self.description!r}: "
                f"{exc}{_damage_hint(exc)}"
            ) from exc

    @property
    def has_wal(self) -> bool:
        """Whether the database keeps a WAL file: a file database does."""
        return self.description != ":memory:"

    def close(self) -> None:
        if self._checkpoint_conn is not None:
            self._checkpoint_conn.close()
            self._checkpoint_conn = None
        self.conn.close()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None

    def set_autocheckpoint(self, pages: int) -> None:
        """Let each commit checkpoint the WAL file once it has *pages* pages,
        or never with 0."""
        if self.has_wal:
            self.conn.execute(f"PRAGMA wal_autocheckpoint = {int(pages)}")

    def checkpoint(self) -> int:
        """Copy the WAL file's committed pages into the database file, and
        return how many pages the WAL file had.

        It uses a connection of its own, so it can run in a worker thread
        while the event loop goes on using the main connection. A passive
        checkpoint waits for no reader or writer; what it cannot copy now,
        a later one copies. SQLite starts the WAL file over only when a write
        begins after a checkpoint that copied every page, which the writes
        of other processes can keep from happening; once the file has
        :data:`RESTART_FRAMES` pages, a restarting checkpoint makes the
        other writers wait (up to their busy timeout, then retrying) so that
        it starts over.
        """
        if self._checkpoint_conn is None:
            self._checkpoint_conn = sqlite3.connect(
                self._path,
                timeout=CHECKPOINT_BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
            self._checkpoint_conn.execute(
                f"PRAGMA journal_size_limit = {JOURNAL_SIZE_LIMIT}"
            )
        conn = self._checkpoint_conn
        # Each row is (busy, pages in the WAL file, pages copied).
        frames: int = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1]
        if frames >= RESTART_FRAMES:
            conn.execute("PRAGMA wal_checkpoint(RESTART)").fetchone()
        return frames

    def sync(self) -> None:
        """Flush the WAL file to the disk with fsync, blocking until it is done.

        Commits run at ``synchronous=NORMAL``, which writes each one to the
        WAL file without syncing it. Syncing the file afterwards makes every
        commit before it survive a power loss, as ``synchronous=FULL`` would
        at each commit, so one sync serves many commits. The connection keeps
        the WAL file in place while it is open, so the descriptor stays
        valid. This runs in a worker thread; it does not touch the
        connection.
        """
        if not self.durable:
            return
        if self._wal_fd is None:
            try:
                self._wal_fd = os.open(self._wal_path, os.O_RDONLY)
            except FileNotFoundError:
                return  # no WAL file: every commit is in the database file
        os.fsync(self._wal_fd)

    # -- transactions ----------------------------------------------------

    def begin(self) -> None:
        """Start a ``BEGIN IMMEDIATE`` transaction, which takes the write lock."""
        self.conn.execute("BEGIN IMMEDIATE")

    def commit(self) -> None:
        self.conn.execute("COMMIT")

    def rollback(self) -> None:
        """Roll back the open transaction, if any."""
        if self.conn.in_transaction:
            self.conn.execute("ROLLBACK")

    @contextmanager
    def write(self) -> Iterator[None]:
        """Run the block in one ``BEGIN IMMEDIATE`` transaction.

        ``BEGIN IMMEDIATE`` takes the write lock up front, so a busy database
        fails here rather than halfway through the block.
        """
        self.conn.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise
        try:
            self.conn.execute("COMMIT")
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise

    @contextmanager
    def savepoint(self) -> Iterator[None]:
        """Undo the block's changes alone if it raises."""
        self.conn.execute("SAVEPOINT request")
        try:
            yield
        except BaseException:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK TO request")
                self.conn.execute("RELEASE request")
            raise
        self.conn.execute("RELEASE request")

    # -- writes ----------------------------------------------------------

    def insert(self, rows: Sequence[Sequence[Any]]) -> None:
        """Insert jobs given as tuples in the column order of INSERT_JOB."""
        self.conn.executemany(_sql.INSERT_JOB, rows)

    def promote_due(self, now: int, limit: int) -> int:
        """Make up to *limit* scheduled or retrying jobs that are due by *now*
        pending, earliest first, and return how many."""
        params = {"now": now, "limit": limit}
        count: int = self.conn.execute(_sql.PROMOTE_DUE, params).rowcount
        return count

    def claim(
        self, names: Collection[str], limit: int, now: int, owner: str
    ) -> list[Row]:
        """Claim up to *limit* pending jobs of *names*, highest priority first.

        Scheduled and retrying jobs that have come due are claimed only
        once :meth:`promote_due` has made them pending.
        """
        if len(names) > _sql.CLAIM_NAMES_PER_QUERY:
            return self._claim_by_chunks(names, limit, now, owner)
        params: list[Any] = [now, owner]
        for name in names:
            params += (name, limit)
        params.append(limit)
        cursor = self.conn.execute(_claim_statement(len(names)), params)
        return sorted(cursor.fetchall(), key=_run_order)

    def _claim_by_chunks(
        self, names: Collection[str], limit: int, now: int, owner: str
    ) -> list[Row]:
        candidates: list[Row] = []
        ordered = sorted(names)
        step = _sql.CLAIM_NAMES_PER_QUERY
        for start in range(0, len(ordered), step):
            chunk = ordered[start : start + step]
            query = " UNION ALL ".join([_sql.READY_FOR_NAME] * len(chunk))
            params = [value for name in chunk for value in (name, limit)]
            candidates.extend(self.conn.execute(query, params).fetchall())
        if not candidates:
            return []
        candidates.sort(key=_run_order)
        seqs = [row["seq"] for row in candidates[:limit]]
        cursor = self.conn.execute(_sql.CLAIM_SEQS, (now, owner, json.dumps(seqs)))
        return sorted(cursor.fetchall(), key=_run_order)

    def claim_job(self, job_id: str, now: int, owner: str) -> Row | None:
        """Claim the job *job_id* if it is waiting and due, and return its row."""
        params = {"id": job_id, "now": now, "owner": owner}
        row: Row | None = self.conn.execute(_sql.CLAIM_JOB, params).fetchone()
        return row

    def complete(self, guard: Mapping[str, Any], now: int) -> bool:
        """Record a completed run; *guard* names the run (see ClaimedJob.guard)."""
        return self.conn.execute(_sql.COMPLETE, {**guard, "now": now}).rowcount == 1

    def fail(self, guard: Mapping[str, Any], outcome: Mapping[str, Any]) -> bool:
        """Record a failed run: *outcome* has status, run_at, finished_at,
        error and entry (the JSON of one error record)."""
        params = {**guard, **outcome}
        return self.conn.execute(_sql.FAIL, params).rowcount == 1

    def release(self, guard: Mapping[str, Any]) -> bool:
        """Put a claimed job back to pending and take back its attempt."""
        return self.conn.execute(_sql.RELEASE, guard).rowcount == 1

    def delete(self, job_id: str) -> bool:
        """Delete the job *job_id* if it is not running."""
        return self.conn.execute(_sql.DELETE_JOB, {"id": job_id}).rowcount == 1

    def retry_dead(self, job_id: str, now: int) -> bool:
        params = {"id": job_id, "now": now}
        return self.conn.execute(_sql.RETRY_DEAD, params).rowcount == 1

    def purge(self, status: str, before: int, limit: int) -> int:
        params = {"status": status, "before": before, "limit": limit}
        return self.conn.execute(_sql.PURGE_FINISHED, params).rowcount

    def retry_dead_ids(self, ids: Sequence[str], now: int) -> list[Row]:
        """Make the dead jobs among *ids* pending, and return their ids and
        names."""
        params = {"ids": json.dumps(list(ids)), "now": now}
        return self.conn.execute(_sql.RETRY_DEAD_IDS, params).fetchall()

    def delete_ids(self, ids: Sequence[str], status: str | None, now: int) -> list[Row]:
        """Delete the jobs among *ids* that are not running and, if *status*
        is set, still have that reported status. Return the id, name and
        stored status of each deleted job."""
        query = _sql.DELETE_IDS.format(status_filter=_status_filter(status))
        params = {"ids": json.dumps(list(ids)), "now": now}
        return self.conn.execute(query, params).fetchall()

    def upsert_owner(self, fields: Mapping[str, Any]) -> None:
        self.conn.execute(_sql.UPSERT_OWNER, fields)

    def delete_owner(self, owner_id: str) -> None:
        self.conn.execute(_sql.DELETE_OWNER, {"id": owner_id})

    def unused_owners(self) -> list[Row]:
        """Return the owners that run no job."""
        return self.conn.execute(_sql.SELECT_UNUSED_OWNERS).fetchall()

    # -- reads -----------------------------------------------------------

    @_reads
    def count_waiting(self, now: int) -> dict[tuple[str, bool], int]:
        """Count waiting jobs by stored status and whether they are due."""
        counts = {("pending", True): self.conn.execute(_sql.COUNT_READY).fetchone()[0]}
        for row in self.conn.execute(_sql.COUNT_FUTURE, {"now": now}):
            counts[(row["status"], bool(row["due"]))] = row["jobs"]
        return counts

    @_reads
    def count_waiting_by_priority(self) -> dict[int, int]:
        cursor = self.conn.execute(_sql.COUNT_WAITING_BY_PRIORITY)
        return {row["priority"]: row["jobs"] for row in cursor}

    @_reads
    def count_finished_before(self, status: str, before: int) -> int:
        params = {"status": status, "before": before}
        value: int = self.conn.execute(_sql.COUNT_FINISHED_BEFORE, params).fetchone()[0]
        return value

    @_reads
    def owners(self) -> list[Row]:
        return self.conn.execute(_sql.SELECT_OWNERS).fetchall()

    @_reads
    def count_running_by_owner(self) -> dict[str | None, int]:
        cursor = self.conn.execute(_sql.COUNT_RUNNING_BY_OWNER)
        return {row["owner"]: row["jobs"] for row in cursor}

    @_reads
    def count_due_by_name(self, now: int) -> dict[str, int]:
        counts = {
            row["name"]: row["jobs"]
            for row in self.conn.execute(_sql.COUNT_READY_BY_NAME)
        }
        for row in self.conn.execute(_sql.COUNT_COME_DUE_BY_NAME, {"now": now}):
            counts[row["name"]] = counts.get(row["name"], 0) + row["jobs"]
        return counts

    @_reads
    def count_running(self) -> int:
        value: int = self.conn.execute(_sql.COUNT_RUNNING).fetchone()[0]
        return value

    @_reads
    def count_finished(self) -> dict[str, int]:
        cursor = self.conn.execute(_sql.COUNT_FINISHED)
        return {row["status"]: row["jobs"] for row in cursor}

    @_reads
    def count_completed_since(self, since: int) -> int:
        row = self.conn.execute(_sql.COUNT_COMPLETED_SINCE, {"since": since}).fetchone()
        value: int = row[0]
        return value

    @_reads
    def count_failed_since(self, since: int) -> int:
        row = self.conn.execute(_sql.COUNT_FAILED_SINCE, {"since": since}).fetchone()
        value: int = row[0]
        return value

    @_reads
    def oldest_due(self, now: int) -> int | None:
        value: int | None = self.conn.execute(_sql.OLDEST_DUE, {"now": now}).fetchone()[
            0
        ]
        return value

    @_reads
    def list_jobs(
        self, status: str | None, name: str | None, limit: int, now: int
    ) -> list[Row]:
        query = _sql.LIST_JOBS.format(status_filter=_status_filter(status))
        params = {"name": name, "limit": limit, "now": now}
        return self.conn.execute(query, params).fetchall()

    @_reads
    def seq_range(self) -> tuple[int, int] | None:
        """Return the lowest and highest seq of any job, or ``None``."""
        low, high = self.conn.execute(_sql.SEQ_RANGE).fetchone()
        return None if low is None else (low, high)

    @_reads
    def matching_ids(
        self, status: str | None, name: str | None, window: tuple[int, int], now: int
    ) -> list[str]:
        """Return the ids of the jobs with a seq in *window* (after its
        first, up to its last) that are not running, have the reported
        *status* and the *name* if set."""
        rows = self._select_matching("id", status, name, window, now)
        return [row[0] for row in rows]

    @_reads
    def count_matching(
        self, status: str | None, name: str | None, window: tuple[int, int], now: int
    ) -> int:
        """Return how many jobs :meth:`matching_ids` would return."""
        rows = self._select_matching("count(*)", status, name, window, now)
        count: int = rows.fetchone()[0]
        return count

    def _select_matching(
        self,
        columns: str,
        status: str | None,
        name: str | None,
        window: tuple[int, int],
        now: int,
    ) -> sqlite3.Cursor:
        query = _sql.MATCHING_IN_WINDOW.format(
            columns=columns, status_filter=_status_filter(status)
        )
        params = {"name": name, "after": window[0], "until": window[1], "now": now}
        return self.conn.execute(query, params)

    @_reads
    def data_version(self) -> int:
        """Return a number that changes when another connection commits."""
        value: int = self.conn.execute("PRAGMA data_version").fetchone()[0]
        return value

    @_reads
    def get(self, job_id: str) -> Row | None:
        row: Row | None = self.conn.execute(_sql.SELECT_JOB, {"id": job_id}).fetchone()
        return row

    @_reads
    def dead_page(
        self, name: str | None, until: int, after: tuple[int, int], limit: int
    ) -> list[tuple[int, int, str]]:
        """Return (finished_at, seq, id) of up to *limit* jobs that died by
        *until*, after *after* in the order they died, only those named
        *name* if set."""
        params = {
            "name": name,
            "until": until,
            "after_time": after[0],
            "after_seq": after[1],
            "limit": limit,
        }
        cursor = self.conn.execute(_sql.SELECT_DEAD_PAGE, params)
        return [(row[0], row[1], row[2]) for row in cursor]

    @_reads
    def dead(self) -> list[Row]:
        return self.conn.execute(_sql.SELECT_DEAD).fetchall()

    @_reads
    def next_future_time(self, after: int) -> int | None:
        """Return the earliest due time after *after* of any scheduled or
        retrying job."""
        params = {"after": after}
        value: int | None = self.conn.execute(_sql.NEXT_FUTURE_TIME, params).fetchone()[
            0
        ]
        return value

    @_reads
    def has_ready(self, names: Iterable[str]) -> bool:
        """Tell whether a due job of one of *names* waits to be claimed."""
        params = {"names": json.dumps(sorted(names))}
        return self.conn.execute(_sql.HAS_READY, params).fetchone() is not None

    @_reads
    def next_future_time_for(self, names: Iterable[str]) -> int | None:
        """Return the earliest due time of the future jobs of *names*."""
        params = {"names": json.dumps(sorted(names))}
        row = self.conn.execute(_sql.NEXT_FUTURE_TIME_FOR_NAMES, params).fetchone()
        value: int | None = row[0]
        return value

    @_reads
    def running_owners(self) -> list[str | None]:
        return [row[0] for row in self.conn.execute(_sql.SELECT_RUNNING_OWNERS)]

    @_reads
    def running_of_owner(self, owner_id: str | None) -> list[Row]:
        return self.conn.execute(
            _sql.SELECT_RUNNING_OF_OWNER, {"owner": owner_id}
        ).fetchall()

    @_reads
    def owner(self, owner_id: str | None) -> Row | None:
        row: Row | None = self.conn.execute(
            _sql.SELECT_OWNER, {"id": owner_id}
        ).fetchone()
        return row

    @_reads
    def ready_unhandled(
        self, names: Collection[str], max_names: int = 10, cap: int = 1000
    ) -> tuple[list[tuple[str, int]], bool]:
        """Return names of due jobs not in *names*, with their counts.

        It stops after *max_names* such names, and counts stop at *cap*, so
        a backlog of many names or many jobs does not stall the event loop.

        Returns:
            The names with their counts, and whether more names were left.
        """
        found: list[tuple[str, int]] = []
        after = ""
        # Handled names are passed over on the way, so they count too.
        for _ in range(len(names) + max_names):
            row = self.conn.execute(_sql.NEXT_READY_NAME, {"after": after}).fetchone()
            if row is None:
                return found, False
            after = row["name"]
            if after in names:
                continue
            if len(found) == max_names:
                return found, True
            params = {"name": after, "cap": cap}
            count = self.conn.execute(_sql.COUNT_READY_FOR_NAME, params).fetchone()
            found.append((after, count[0]))
        return found, True


def _status_filter(status: str | None) -> str:
    """Return the SQL condition for jobs of the reported *status*."""
    return "1" if status is None else _sql.LIST_FILTERS[status]
