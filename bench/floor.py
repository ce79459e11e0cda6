"""Floors for a drain: trio's hand-offs alone, and pulse-trio's SQL alone.

One dispatching task hands each idle worker task one job at a time and
waits for their results, as pulse-trio's persistence task does after each
commit. Each worker runs a job as pulse-trio's workers do: it sets a
deadline on its cancel scope, decodes the payload, awaits a no-op
handler and hands its result back. Nothing is stored, so the figure is
the time that trio itself takes per job in this shape. Added to the
per-job time of :func:`queue_statements`, it bounds pulse-trio's drain
from below while the queue runs its transactions on the event loop's
thread.

:func:`queue_statements` runs the statements that pulse-trio runs for
each batch of a drain, on its own table and indexes, with plain
``sqlite3`` and nothing else: the SQL that its guarantees need, without
the library around it.
"""

from __future__ import annotations

import collections
import json
import math
import sqlite3
import time
from pathlib import Path
from typing import Any

import trio
import trio.testing

from pulse_trio import _sql
from pulse_trio._messages import Waiter
from pulse_trio._persistence import CHECKPOINT_FRAMES
from pulse_trio._scheduler import PROMOTE_CHUNK

from .cases_pulse import build_backlog
from .common import JOB_NAME, remove_database


async def _no_op(payload: Any) -> None:
    pass


# pulse-trio decodes its compact payloads this way too.
_DECODER = json.JSONDecoder()


def trio_handoff(spec: dict[str, Any]) -> dict[str, Any]:
    """Run *count* no-op jobs through *workers* worker tasks."""
    count: int = spec["count"]
    workers: int = spec.get("workers", 4)
    timeout = 300.0

    async def main() -> dict[str, Any]:
        payloads = collections.deque(json.dumps(index) for index in range(count))
        results: list[int] = []
        dispatcher = Waiter()
        waiters = [Waiter() for _ in range(workers)]
        inboxes: list[str | None] = [None] * workers
        idle = collections.deque(range(workers))

        async def worker(index: int) -> None:
            waiter = waiters[index]
            with trio.CancelScope() as scope:
                while True:
                    if inboxes[index] is None:
                        await waiter.wait()
                    payload, inboxes[index] = inboxes[index], None
                    if payload is None:
                        return
                    scope.deadline = trio.current_time() + timeout
                    value, _ = _DECODER.raw_decode(payload)
                    await _no_op(value)
                    scope.deadline = math.inf
                    results.append(index)
                    idle.append(index)
                    dispatcher.wake()

        async def dispatch() -> float:
            started = time.perf_counter()
            finished = 0
            while finished < count:
                finished += len(results)
                results.clear()
                while idle and payloads:
                    index = idle.popleft()
                    inboxes[index] = payloads.popleft()
                    waiters[index].wake()
                if finished < count:
                    await dispatcher.wait()
            return time.perf_counter() - started

        async with trio.open_nursery() as nursery:
            for index in range(workers):
                nursery.start_soon(worker, index)
            await trio.testing.wait_all_tasks_blocked()
            drain_s = await dispatch()
            nursery.cancel_scope.cancel()
        return {
            "jobs": count,
            "workers": workers,
            "drain_s": drain_s,
            "drain_per_s": count / drain_s,
        }

    result: dict[str, Any] = trio.run(main)
    return result


def queue_statements(spec: dict[str, Any]) -> dict[str, Any]:
    """Drain *count* jobs with pulse-trio's statements, *workers* a commit.

    pulse-trio creates the file and stores the jobs. Then each transaction
    records the last claimed jobs completed, with the guard on owner and
    attempt, makes due scheduled jobs pending, and claims up to *workers*
    jobs, as the persistence task does after each batch of a drain.
    """
    path = Path(spec["workdir"]) / "statements.db"
    count: int = spec["count"]
    workers: int = spec.get("workers", 4)
    remove_database(path)
    build_backlog({"path": str(path), "count": count})
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")
    conn.execute(f"PRAGMA wal_autocheckpoint = {CHECKPOINT_FRAMES}")
    owner = "floor"
    claim = _sql.claim_due(1)
    claimed: list[tuple[Any, ...]] = []
    drained = 0
    started = time.perf_counter()
    while True:
        now = time.time_ns() // 1000
        conn.execute("BEGIN IMMEDIATE")
        for row in claimed:
            params = {
                "seq": row[0],
                "id": row[1],
                "owner": owner,
                "attempt": row[4],
                "now": now,
            }
            conn.execute(_sql.COMPLETE, params)
        drained += len(claimed)
        conn.execute(_sql.PROMOTE_DUE, {"now": now, "limit": PROMOTE_CHUNK})
        claimed = conn.execute(
            claim, (now, owner, JOB_NAME, workers, workers)
        ).fetchall()
        conn.execute("COMMIT")
        if not claimed:
            break
    drain_s = time.perf_counter() - started
    conn.close()
    if drained != count:
        raise RuntimeError(f"drained {drained} of {count} jobs")
    return {
        "jobs": count,
        "workers": workers,
        "drain_s": drain_s,
        "drain_per_s": count / drain_s,
    }
