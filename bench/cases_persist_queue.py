"""Measurement of persist-queue's ``SQLiteAckQueue`` with 4 consumer threads.

The queue keeps its defaults: WAL with SQLite's default ``synchronous``
(FULL) and one commit per ``put``, ``get`` and ``ack``. In persist-queue
1.1.0, ``get`` selects the first row by rowid whose status is below
"unacknowledged", with no index on the status, so it scans every
acknowledged row still in the table. The consumers therefore call
``clear_acked_data()`` after every 1,000 acknowledgements, which deletes
all but the latest 1,000 acknowledged rows.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from .common import Deadline

WORKERS = 4
CLEAR_EVERY = 1000


def end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """Put *count* items, then get and acknowledge them from 4 threads."""
    from persistqueue import SQLiteAckQueue
    from persistqueue.exceptions import Empty

    folder = Path(spec["workdir"]) / "persist-queue"
    count: int = spec["count"]
    queue = SQLiteAckQueue(str(folder), multithreading=True)
    synchronous = queue._putter.execute("PRAGMA synchronous").fetchone()[0]

    started = time.perf_counter()
    for index in range(count):
        queue.put(index)
    enqueue_s = time.perf_counter() - started

    acked = 0
    lock = threading.Lock()
    deadline = Deadline(spec.get("timeout_s", 1800), "persist-queue drain")
    errors: list[BaseException] = []

    def consume() -> None:
        nonlocal acked
        try:
            while True:
                deadline.check()
                try:
                    item = queue.get(block=False, raw=True)
                except Empty:
                    return
                queue.ack(id=item["pqid"])
                with lock:
                    acked += 1
                    clear = acked % CLEAR_EVERY == 0
                if clear:
                    queue.clear_acked_data()
        except BaseException as exc:  # noqa: BLE001 - re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=consume) for _ in range(WORKERS)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    drain_s = time.perf_counter() - started
    queue.close()
    if errors:
        raise errors[0]
    if acked != count:
        raise RuntimeError(f"acknowledged {acked} of {count} items")
    return {
        "jobs": count,
        "synchronous": synchronous,
        "enqueue_s": enqueue_s,
        "drain_s": drain_s,
        "enqueue_per_s": count / enqueue_s,
        "drain_per_s": count / drain_s,
        "jobs_per_s": count / (enqueue_s + drain_s),
    }
