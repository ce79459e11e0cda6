"""Hash every regular file under a folder with one pulse-trio job per file.

Usage::

    python examples/hash_tree.py [DIR] [--db PATH] [--workers N] [--verbose]

DIR defaults to the folder of Python's standard library
(``sysconfig.get_paths()["stdlib"]``): thousands of real files, and more
where packages are installed in its ``site-packages``. The
script prints one line per file in the format of GNU ``sha256sum``
(``<64 hex digits>  <path>``), sorted by path, so that both of these print
nothing::

    python examples/hash_tree.py DIR |
        diff - <(find DIR -type f | sort | xargs sha256sum)
    python examples/hash_tree.py DIR |
        diff - <(find DIR -type f -print0 | sort -z | xargs -0 sha256sum)

The first pipeline breaks on names with blanks, quotes or backslashes
because of ``xargs``, and the second one does not.

How the output matches ``find DIR -type f | sort | xargs sha256sum``:

- Files: regular files only, the files ``find -type f`` lists. Symbolic
  links are neither followed nor hashed, and FIFOs, sockets and device
  files are skipped, so a FIFO never blocks a worker.
- Paths: DIR exactly as given, joined with the path below it, as ``find``
  prints them (``DIR/sub/name``; ``.`` gives ``./sub/name``).
- Order: the collation of the current locale (``LC_COLLATE``), as
  ``sort`` uses it, which is byte order in the C and C.UTF-8 locales.
- Names that contain a backslash, a newline or a carriage return are
  escaped and their line starts with a backslash, as GNU coreutils 9.1
  ``sha256sum`` does it.

State lives in one SQLite file, ``hash_tree.db`` in the current folder by
default (``--db`` changes it). It contains the pulse-trio queue and two
tables of this script: ``hash_tree_files`` (the job that hashes each file,
by absolute path, size and modification time) and ``hash_tree_digests``
(the digest each job stored). Keep the database outside DIR. If it is
inside, the script skips the database and its ``-wal``, ``-shm`` and
``-journal`` files, because they change while it runs, so ``find`` then
lists a few files that the output lacks.

A second run, or a run after the script was killed (even with ``kill
-9``), hashes only what is left:

- A file whose job stored a digest, and whose size and modification time
  are unchanged, is not enqueued or hashed again.
- Jobs still pending, retrying or interrupted in the database are resumed
  by the queue itself. The queue also recovers the run that a killed
  process left running, and that run counts as an attempt.
- A file that failed in an earlier run (a dead job) gets a new chance
  with ``Pulse.retry``.

A file that cannot be read ends as a dead job after 4 attempts (with
0.7 s of backoff in all). Its error is reported on stderr at the end, and
the exit status is 1, as with ``sha256sum``. When you run as root, every
file is readable, so an error comes only from a file that vanishes or
stops being a regular file between the listing and its job.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import locale
import logging
import os
import sqlite3
import stat
import sys
import sysconfig
import threading
from collections.abc import Callable, Iterable, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import trio

from pulse_trio import (
    EventKind,
    Job,
    JobConfig,
    JobEvent,
    JobNotFound,
    JobStatus,
    Pulse,
    current_job,
)

PROGRAM = "hash_tree"

JOB_NAME = "hash_file"

DEFAULT_DATABASE = "hash_tree.db"

BUSY_TIMEOUT = 30.0
"""Seconds a connection of this script waits for another writer's lock."""

ENQUEUE_CHUNK = 500
"""Files enqueued in one ``enqueue_many`` call and recorded in one commit."""

JOB_CONFIG = JobConfig(
    max_retries=3,
    retry_delay=timedelta(milliseconds=100),
    max_retry_delay=timedelta(seconds=1),
    # The handler runs in a thread, which a timeout cannot interrupt, and a
    # large file may take minutes to hash.
    timeout=None,
)
"""Retries cover files that cannot be read for a moment and runs interrupted
by a killed process. Four attempts end after 0.1 + 0.2 + 0.4 s of backoff."""

TTY_PROGRESS_INTERVAL = 0.2
"""Seconds between two redraws of the progress line on a terminal."""

LOG_PROGRESS_INTERVAL = 5.0
"""Seconds between two progress lines when stderr is not a terminal."""

SCHEMA = """
CREATE TABLE IF NOT EXISTS hash_tree_files (
    path BLOB PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    job_id TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS hash_tree_digests (
    job_id TEXT PRIMARY KEY,
    sha256 TEXT NOT NULL
);
"""


# -- listing files -------------------------------------------------------


@dataclass(frozen=True)
class ListedFile:
    """A regular file found under DIR."""

    display_path: str
    """The path as output: DIR as given, joined with the path below it."""
    key: bytes
    """The absolute path as bytes, the key of ``hash_tree_files``."""
    size: int
    mtime_ns: int


def list_files(top: str, skip: set[str]) -> tuple[list[ListedFile], list[str]]:
    """Walk *top* without following symbolic links, and return its regular
    files and the errors met, as ``find`` does.

    Files whose absolute path is in *skip* are left out.
    """
    files: list[ListedFile] = []
    errors: list[str] = []
    folders = [top]
    while folders:
        folder = folders.pop()
        try:
            with os.scandir(folder) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        folders.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        listed = _listed_file(entry, skip, errors)
                        if listed is not None:
                            files.append(listed)
        except OSError as exc:
            errors.append(f"{folder}: {exc.strerror or exc}")
    return files, errors


def _listed_file(
    entry: os.DirEntry[str], skip: set[str], errors: list[str]
) -> ListedFile | None:
    absolute = os.path.abspath(entry.path)
    if absolute in skip:
        return None
    try:
        info = entry.stat(follow_symlinks=False)
    except OSError as exc:
        errors.append(f"{entry.path}: {exc.strerror or exc}")
        return None
    return ListedFile(
        display_path=entry.path,
        key=os.fsencode(absolute),
        size=info.st_size,
        mtime_ns=info.st_mtime_ns,
    )


def database_files(database: str) -> set[str]:
    """Return the absolute paths of the database and its companion files."""
    path = os.path.abspath(database)
    return {path, *(path + suffix for suffix in ("-wal", "-shm", "-journal"))}


def is_inside(path: str, folder: str) -> bool:
    """Tell whether *path* is *folder* or lies below it."""
    folder = os.path.abspath(folder)
    return os.path.commonpath([os.path.abspath(path), folder]) == folder


def collation_key() -> Callable[[str], bytes | str]:
    """Return the sort key of paths in the collation that ``sort`` uses here.

    NOTE: only the C, C.UTF-8 and POSIX locales were checked against GNU
    sort. Other locales use ``locale.strxfrm``, the collation of the C
    library, which GNU sort also uses.
    """
    try:
        collation = locale.setlocale(locale.LC_COLLATE, "")
    except locale.Error:
        collation = "C"
    if collation in ("C", "POSIX") or collation.startswith("C."):
        return os.fsencode
    return locale.strxfrm


# -- the job -------------------------------------------------------------


def job_payload(path: str) -> dict[str, str]:
    """Return the payload of the job that hashes *path*.

    A payload is JSON, which has no place for bytes that are not UTF-8, so
    a name made of such bytes travels as the base64 of its bytes.
    """
    try:
        path.encode()
    except UnicodeEncodeError:
        return {"path_base64": base64.b64encode(os.fsencode(path)).decode()}
    return {"path": path}


def path_from_payload(payload: dict[str, str]) -> str:
    if "path" in payload:
        return payload["path"]
    return os.fsdecode(base64.b64decode(payload["path_base64"]))


def connect(database: str, *, check_same_thread: bool = True) -> sqlite3.Connection:
    """Open a connection of this script, outside any transaction."""
    conn = sqlite3.connect(
        database,
        timeout=BUSY_TIMEOUT,
        isolation_level=None,
        check_same_thread=check_same_thread,
    )
    conn.execute("PRAGMA synchronous = NORMAL")
    return conn


def sha256_of_file(path: str) -> str:
    """Return the SHA-256 of the regular file at *path*, in hex.

    Raises:
        OSError: The file cannot be opened or read, or is no longer a
            regular file (opening a FIFO this way does not block).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    with open(os.open(path, flags), "rb") as file:
        mode = os.fstat(file.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise OSError(f"{path!r} is no longer a regular file")
        return hashlib.file_digest(file, "sha256").hexdigest()


class HashFileHandler:
    """The handler of ``hash_file`` jobs: stores each file's digest.

    It is a plain callable, so pulse-trio runs it in a worker thread. Each
    thread opens its own connection once and keeps it, because opening a
    connection takes longer than hashing a small file.
    """

    def __init__(self, database: str) -> None:
        self._database = database
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()

    def __call__(self, payload: dict[str, str]) -> None:
        job_id = current_job().id
        conn = self._connection()
        stored = conn.execute(
            "SELECT 1 FROM hash_tree_digests WHERE job_id = ?", (job_id,)
        ).fetchone()
        if stored is not None:
            # An earlier run stored the digest, and then its process was
            # killed before the queue recorded the job as completed.
            return
        digest = sha256_of_file(path_from_payload(payload))
        conn.execute(
            "INSERT OR REPLACE INTO hash_tree_digests (job_id, sha256) VALUES (?, ?)",
            (job_id, digest),
        )

    def _connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # Closed from the main thread by close(), hence check_same_thread.
            conn = connect(self._database, check_same_thread=False)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        """Close the connections. Call it once the queue has stopped."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()


# -- planning: what to enqueue, resume or retry --------------------------


@dataclass
class Plan:
    """The job of every listed file, and how each job came to be."""

    jobs: dict[str, ListedFile] = field(default_factory=dict)
    unfinished: list[str] = field(default_factory=list)
    """Ids of the jobs that have no digest yet."""
    hashed_before: int = 0
    resumed: int = 0
    retried: int = 0
    enqueued: int = 0


def open_results(database: str) -> sqlite3.Connection:
    """Open the script's connection and create its tables if missing."""
    conn = connect(database)
    try:
        conn.execute("BEGIN IMMEDIATE")
        for statement in SCHEMA.split(";"):
            if statement.strip():
                conn.execute(statement)
        conn.execute("COMMIT")
    except BaseException:
        conn.close()
        raise
    return conn


async def plan_jobs(
    pulse: Pulse, results: sqlite3.Connection, files: Sequence[ListedFile]
) -> Plan:
    """Find or create the job of every file in *files*."""
    known = {
        row[0]: (row[1], row[2], row[3])
        for row in results.execute(
            "SELECT path, size, mtime_ns, job_id FROM hash_tree_files"
        )
    }
    hashed = {row[0] for row in results.execute("SELECT job_id FROM hash_tree_digests")}
    plan = Plan()
    new: list[ListedFile] = []
    for file in files:
        record = known.get(file.key)
        if record is None or record[:2] != (file.size, file.mtime_ns):
            new.append(file)
            continue
        job_id = record[2]
        if job_id in hashed:
            plan.hashed_before += 1
        elif await _reuse_job(pulse, job_id, plan):
            plan.unfinished.append(job_id)
        else:
            new.append(file)
            continue
        plan.jobs[job_id] = file
    for start in range(0, len(new), ENQUEUE_CHUNK):
        await _enqueue(pulse, results, new[start : start + ENQUEUE_CHUNK], plan)
    return plan


async def _reuse_job(pulse: Pulse, job_id: str, plan: Plan) -> bool:
    """Resume or retry the unfinished job *job_id*, or return False if it is gone."""
    try:
        job = await pulse.status(job_id)
    except JobNotFound:
        return False
    if job.status is JobStatus.COMPLETED:
        # Completed without a digest: the digest row was deleted by hand.
        return False
    if job.status is JobStatus.DEAD:
        await pulse.retry(job_id)
        plan.retried += 1
    else:
        plan.resumed += 1
    return True


async def _enqueue(
    pulse: Pulse, results: sqlite3.Connection, files: list[ListedFile], plan: Plan
) -> None:
    payloads = [job_payload(os.fsdecode(file.key)) for file in files]
    job_ids = await pulse.enqueue_many(JOB_NAME, payloads, JOB_CONFIG)
    # NOTE: a kill between the commit above and the one below leaves these
    # jobs unrecorded here, so the next run enqueues and hashes those files
    # again. The output stays correct.
    results.execute("BEGIN IMMEDIATE")
    results.executemany(
        "INSERT OR REPLACE INTO hash_tree_files (path, size, mtime_ns, job_id) "
        "VALUES (?, ?, ?, ?)",
        [
            (file.key, file.size, file.mtime_ns, job_id)
            for file, job_id in zip(files, job_ids, strict=True)
        ],
    )
    results.execute("COMMIT")
    plan.jobs.update(zip(job_ids, files, strict=True))
    plan.unfinished.extend(job_ids)
    plan.enqueued += len(files)


# -- progress ------------------------------------------------------------


@dataclass
class Progress:
    """Counts of finished jobs of this run, kept up to date by job events."""

    job_ids: set[str]
    done: int
    failed: int = 0
    hashed_now: int = 0

    def on_event(self, event: JobEvent) -> None:
        if event.job_id not in self.job_ids:
            return
        if event.kind is EventKind.COMPLETED:
            self.done += 1
            self.hashed_now += 1
        elif event.kind is EventKind.DEAD or (
            event.kind is EventKind.RECOVERED and event.next_run_at is None
        ):
            self.failed += 1

    def line(self, elapsed: float) -> str:
        rate = self.hashed_now / elapsed if elapsed > 0 else 0.0
        return (
            f"{PROGRAM}: {self.done}/{len(self.job_ids)} files hashed, "
            f"{self.failed} failed, {rate:.0f} files/s"
        )


async def show_progress(progress: Progress, start: float) -> None:
    """Redraw the progress line on stderr until cancelled."""
    on_terminal = sys.stderr.isatty()
    interval = TTY_PROGRESS_INTERVAL if on_terminal else LOG_PROGRESS_INTERVAL
    try:
        while True:
            await trio.sleep(interval)
            line = progress.line(trio.current_time() - start)
            if on_terminal:
                sys.stderr.write(f"\r{line}\x1b[K")
            else:
                sys.stderr.write(line + "\n")
            sys.stderr.flush()
    finally:
        if on_terminal:
            sys.stderr.write("\r\x1b[K")


# -- output --------------------------------------------------------------


def sha256sum_line(digest: str, path: str) -> bytes:
    """Return the output line of GNU ``sha256sum`` for *path*, as bytes."""
    name = os.fsencode(path)
    if any(char in name for char in b"\\\n\r"):
        escaped = name.replace(b"\\", b"\\\\").replace(b"\n", b"\\n")
        escaped = escaped.replace(b"\r", b"\\r")
        return b"\\" + digest.encode() + b"  " + escaped + b"\n"
    return digest.encode() + b"  " + name + b"\n"


def read_digests(results: sqlite3.Connection, job_ids: Iterable[str]) -> dict[str, str]:
    selected = set(job_ids)
    return {
        job_id: digest
        for job_id, digest in results.execute(
            "SELECT job_id, sha256 FROM hash_tree_digests"
        )
        if job_id in selected
    }


def describe_failure(file: ListedFile, job: Job) -> str:
    if job.status is JobStatus.DEAD:
        return (
            f"{PROGRAM}: {file.display_path}: {job.last_error} "
            f"(job {job.id} is dead after {job.attempts} attempts)"
        )
    return (
        f"{PROGRAM}: {file.display_path}: job {job.id} completed but stored no digest; "
        "run again to hash the file anew"
    )


# -- the run -------------------------------------------------------------


async def hash_files(
    files: list[ListedFile], database: str, workers: int | None
) -> tuple[list[tuple[ListedFile, str]], list[str]]:
    """Hash *files* through the queue in *database*.

    Returns:
        Each hashed file with its digest, and one error line per file that
        failed.
    """
    handler = HashFileHandler(database)
    with closing(open_results(database)) as results:
        pulse = await Pulse.new(database, workers=workers)
        try:
            pulse.handle(JOB_NAME, handler)
            plan = await plan_jobs(pulse, results, files)
            print(
                f"{PROGRAM}: {plan.hashed_before} hashed before, {plan.resumed} "
                f"resumed, {plan.retried} retried, {plan.enqueued} enqueued",
                file=sys.stderr,
            )
            await _run_queue(pulse, plan)
            digests = read_digests(results, plan.jobs)
            failures = [
                describe_failure(plan.jobs[job_id], await pulse.wait(job_id))
                for job_id in plan.unfinished
                if job_id not in digests
            ]
        finally:
            pulse.close()
            handler.close()
    hashed = [
        (file, digests[job_id])
        for job_id, file in plan.jobs.items()
        if job_id in digests
    ]
    return hashed, failures


async def _run_queue(pulse: Pulse, plan: Plan) -> None:
    """Run the queue until no job is waiting or running, showing progress."""
    progress = Progress(job_ids=set(plan.jobs), done=plan.hashed_before)
    pulse.add_listener(progress.on_event)
    start = trio.current_time()
    async with pulse, trio.open_nursery() as nursery:
        nursery.start_soon(show_progress, progress, start)
        await pulse.drain(include_scheduled=True)
        nursery.cancel_scope.cancel()
    elapsed = trio.current_time() - start
    rate = progress.hashed_now / elapsed if elapsed > 0 else 0.0
    print(
        f"{PROGRAM}: hashed {progress.hashed_now} files in {elapsed:.1f} s "
        f"({rate:.0f} files/s), {progress.failed} failed",
        file=sys.stderr,
    )


# -- command line --------------------------------------------------------


def parse_arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="hash_tree.py",
        description="Print the SHA-256 of every regular file under DIR, in the "
        "format of sha256sum, with one pulse-trio job per file.",
    )
    parser.add_argument(
        "folder",
        nargs="?",
        metavar="DIR",
        default=sysconfig.get_paths()["stdlib"],
        help="folder to hash (default: the Python standard library, %(default)s)",
    )
    parser.add_argument(
        "--db",
        default=DEFAULT_DATABASE,
        metavar="PATH",
        help="SQLite file for the queue and the digests. A second run on the "
        "same file hashes only what is left (default: %(default)s)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        metavar="N",
        help="files hashed at once (default: the number of CPUs)",
    )
    parser.add_argument(
        "--verbose",
        "-v",
        action="store_true",
        help="log every job of pulse-trio, with tracebacks of failed runs",
    )
    args = parser.parse_args(argv)
    if not os.path.isdir(args.folder):
        parser.error(f"DIR {args.folder!r} is not a folder")
    if args.workers is not None and args.workers < 1:
        parser.error(f"--workers must be 1 or more, got {args.workers}")
    return args


class _NoTracebackFormatter(logging.Formatter):
    """A log formatter that leaves out tracebacks."""

    def formatException(self, ei: Any) -> str:
        return ""


def configure_logging(verbose: bool) -> None:
    """Log warnings and errors of pulse-trio to stderr, every job if *verbose*.

    Without *verbose*, tracebacks are left out, because the failures are
    listed again at the end.
    """
    handler = logging.StreamHandler(sys.stderr)
    text = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if verbose:
        handler.setFormatter(logging.Formatter(text))
    else:
        handler.setFormatter(_NoTracebackFormatter(text))
    logging.basicConfig(
        level=logging.INFO if verbose else logging.WARNING, handlers=[handler]
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line and return the exit status."""
    args = parse_arguments(argv)
    configure_logging(args.verbose)
    database_folder = os.path.dirname(os.path.abspath(args.db))
    if not os.path.isdir(database_folder):
        print(
            f"{PROGRAM}: folder {database_folder!r} of --db does not exist. "
            "Create it first, or pass another --db",
            file=sys.stderr,
        )
        return 2

    files, walk_errors = list_files(args.folder, database_files(args.db))
    if is_inside(args.db, args.folder):
        print(
            f"{PROGRAM}: the database {args.db} is inside {args.folder}, so it "
            "and its -wal, -shm and -journal files are not hashed",
            file=sys.stderr,
        )
    for error in walk_errors:
        print(f"{PROGRAM}: {error}", file=sys.stderr)
    print(f"{PROGRAM}: found {len(files)} files under {args.folder}", file=sys.stderr)
    sys.stderr.flush()

    # NOTE: with pulse-trio 0.1.0, Ctrl-C can leave the process hanging when
    # the interrupt lands inside the queue's database task. Kill it then, and
    # the next run resumes as after a crash.
    interrupted = False
    try:
        hashed, failures = trio.run(hash_files, files, args.db, args.workers)
    except* KeyboardInterrupt:  # bare, or in a group from the nurseries
        interrupted = True
    if interrupted:
        print(
            f"{PROGRAM}: interrupted. Run again with --db {args.db} to hash "
            "the remaining files",
            file=sys.stderr,
        )
        return 130

    key = collation_key()
    hashed.sort(key=lambda item: key(item[0].display_path))
    for file, digest in hashed:
        sys.stdout.buffer.write(sha256sum_line(digest, file.display_path))
    sys.stdout.flush()
    for failure in failures:
        print(failure, file=sys.stderr)
    return 1 if failures or walk_errors else 0


if __name__ == "__main__":
    sys.exit(main())
