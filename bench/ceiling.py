"""A ceiling for a job queue on SQLite from Python: plain ``sqlite3``.

It does what a queue must do for each job, in batches of 100 per
transaction and with no framework around it: insert the jobs, claim due
ones with ``UPDATE ... RETURNING``, decode each payload, and mark them
completed. The table keeps the columns and the partial index of due jobs
that a queue needs, so the figure bounds what any queue on the same
SQLite, disk and durability can reach from one Python thread. Its ids
sort by creation time, as pulse-trio's do, because random ids make every
insert land at a random page of the unique index.

With *workers* set, the drain claims at most that many jobs per
transaction. A queue must do the same when each claim commits before its
jobs start and it claims no more jobs than it has idle workers. Each
transaction marks the jobs of the last claim completed and claims the
next ones. This drain leaves the payloads to the trio floor in
``floor.py``, which decodes them, so that the sum of the two counts each
step once. SQLite checkpoints every 4,096 pages, as pulse-trio does, not
every 1,000. Next to ``floor.queue_statements``, which runs pulse-trio's
own statements, it shows what its guards and indexes cost.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from pathlib import Path
from typing import Any

from pulse_trio._ids import new_job_ids
from pulse_trio._persistence import CHECKPOINT_FRAMES

from .common import JOB_NAME, remove_database

SCHEMA = """
CREATE TABLE jobs (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    payload TEXT NOT NULL,
    status TEXT NOT NULL,
    priority INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    run_at INTEGER NOT NULL,
    started_at INTEGER,
    finished_at INTEGER,
    owner TEXT
);
CREATE INDEX jobs_due ON jobs (priority DESC, run_at, seq) WHERE status = 'pending';
"""

INSERT = """
INSERT INTO jobs (id, name, payload, status, priority, created_at, run_at)
VALUES (?, ?, ?, 'pending', 1, ?, ?)
"""

CLAIM = """
UPDATE jobs SET status = 'running', attempts = attempts + 1, started_at = ?,
    owner = ?
WHERE seq IN (
    SELECT seq FROM jobs WHERE status = 'pending' AND run_at <= ?
    ORDER BY priority DESC, run_at, seq LIMIT ?
)
RETURNING seq, payload
"""

COMPLETE = """
UPDATE jobs SET status = 'completed', finished_at = ?, owner = NULL
WHERE seq = ? AND status = 'running'
"""


def _now_us() -> int:
    return time.time_ns() // 1000


def _connect(path: Path, synchronous: str) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {synchronous}")
    return conn


def _insert(conn: sqlite3.Connection, count: int, batch: int) -> None:
    for start in range(0, count, batch):
        now = _now_us()
        indexes = range(start, min(start + batch, count))
        ids = new_job_ids(now, len(indexes))
        rows = [
            (job_id, JOB_NAME, json.dumps(index), now, now)
            for job_id, index in zip(ids, indexes, strict=True)
        ]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(INSERT, rows)
        conn.execute("COMMIT")


def _drain(conn: sqlite3.Connection, batch: int) -> int:
    owner = uuid.uuid4().hex
    drained = 0
    while True:
        now = _now_us()
        conn.execute("BEGIN IMMEDIATE")
        claimed = conn.execute(CLAIM, (now, owner, now, batch)).fetchall()
        conn.execute("COMMIT")
        if not claimed:
            return drained
        for _seq, payload in claimed:
            json.loads(payload)
        now = _now_us()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(COMPLETE, [(now, seq) for seq, _payload in claimed])
        conn.execute("COMMIT")
        drained += len(claimed)


def _drain_by_workers(conn: sqlite3.Connection, workers: int) -> int:
    owner = uuid.uuid4().hex
    drained = 0
    claimed: list[tuple[int, str]] = []
    conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_FRAMES}")
    while True:
        now = _now_us()
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany(COMPLETE, [(now, seq) for seq, _payload in claimed])
        drained += len(claimed)
        claimed = conn.execute(CLAIM, (now, owner, now, workers)).fetchall()
        conn.execute("COMMIT")
        if not claimed:
            return drained


def end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """Insert *count* jobs, *batch* at a time, then claim and complete them:
    *batch* at a time, or with *workers*, as described at the top."""
    path = Path(spec["workdir"]) / "ceiling.db"
    count: int = spec["count"]
    batch: int = spec.get("batch", 100)
    workers: int | None = spec.get("workers")
    synchronous: str = spec.get("synchronous", "NORMAL")
    remove_database(path)
    conn = _connect(path, synchronous)
    conn.executescript(SCHEMA)
    started = time.perf_counter()
    _insert(conn, count, batch)
    insert_s = time.perf_counter() - started
    started = time.perf_counter()
    if workers is None:
        drained = _drain(conn, batch)
    else:
        drained = _drain_by_workers(conn, workers)
    drain_s = time.perf_counter() - started
    conn.close()
    if drained != count:
        raise RuntimeError(f"drained {drained} of {count} jobs")
    return {
        "jobs": count,
        "synchronous": synchronous,
        "batch": batch,
        "workers": workers,
        "enqueue_s": insert_s,
        "drain_s": drain_s,
        "enqueue_per_s": count / insert_s,
        "drain_per_s": count / drain_s,
        "jobs_per_s": count / (insert_s + drain_s),
    }


def insert_only(spec: dict[str, Any]) -> dict[str, Any]:
    """Insert *count* jobs, *batch* rows per transaction."""
    path = Path(spec["workdir"]) / "ceiling.db"
    count: int = spec["count"]
    batch: int = spec.get("batch", 1000)
    remove_database(path)
    conn = _connect(path, spec.get("synchronous", "NORMAL"))
    conn.executescript(SCHEMA)
    started = time.perf_counter()
    _insert(conn, count, batch)
    elapsed = time.perf_counter() - started
    conn.close()
    return {"jobs": count, "batch": batch, "jobs_per_s": count / elapsed}
