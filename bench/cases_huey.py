"""Measurements of Huey's ``SqliteHuey`` with a consumer of 4 threads.

``fsync`` selects the durability: ``None`` keeps Huey's default (WAL with
SQLite's default ``synchronous``, which is FULL), ``False`` turns fsync off
(``synchronous=OFF``). Huey deletes a task from its queue when a worker
takes it, and a no-op task that returns ``None`` stores no result, so a
task is finished once its function has run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import Deadline, latency_summary, remove_database, split_count

WORKERS = 4


class ThreadCountdown:
    """Counts calls from many threads and sets an event at *target*."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self._lock = threading.Lock()
        self.reached = threading.Event()

    def hit(self) -> None:
        with self._lock:
            self.count += 1
            if self.count == self.target:
                self.reached.set()


def _huey(path: Path, fsync: bool | None) -> Any:
    from huey import SqliteHuey

    remove_database(path)
    options = {} if fsync is None else {"fsync": fsync}
    return SqliteHuey(name="bench", filename=str(path), **options)


def _synchronous(huey: Any) -> int:
    """Return the ``PRAGMA synchronous`` value of Huey's connection."""
    value: int = huey.storage.conn.execute("PRAGMA synchronous").fetchone()[0]
    return value


def _consumer(huey: Any) -> Any:
    return huey.create_consumer(workers=WORKERS, worker_type="thread")


def _produce(call: Callable[[int], object], count: int, threads: int) -> None:
    def work(share: int) -> None:
        for index in range(share):
            call(index)

    if threads == 1:
        work(count)
        return
    pool = [
        threading.Thread(target=work, args=(share,))
        for share in split_count(count, threads)
    ]
    for thread in pool:
        thread.start()
    for thread in pool:
        thread.join()


def end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """Enqueue *count* tasks with the consumer stopped, then drain them."""
    path = Path(spec["workdir"]) / "huey.db"
    count: int = spec["count"]
    huey = _huey(path, spec.get("fsync"))
    countdown = ThreadCountdown(count)

    @huey.task()
    def noop(index: int) -> None:
        countdown.hit()

    started = time.perf_counter()
    _produce(noop, count, spec.get("producers", 1))
    enqueue_s = time.perf_counter() - started

    consumer = _consumer(huey)
    started = time.perf_counter()
    consumer.start()
    finished = countdown.reached.wait(timeout=spec.get("timeout_s", 1800))
    drain_s = time.perf_counter() - started
    consumer.stop(graceful=True)
    if not finished:
        raise TimeoutError(f"{countdown.count} of {count} tasks ran before the timeout")
    return {
        "jobs": count,
        "synchronous": _synchronous(huey),
        "enqueue_s": enqueue_s,
        "drain_s": drain_s,
        "enqueue_per_s": count / enqueue_s,
        "drain_per_s": count / drain_s,
        "jobs_per_s": count / (enqueue_s + drain_s),
    }


def enqueue(spec: dict[str, Any]) -> dict[str, Any]:
    """Time *count* enqueues from *producers* threads, consumer stopped."""
    path = Path(spec["workdir"]) / "huey.db"
    count: int = spec["count"]
    huey = _huey(path, spec.get("fsync"))

    @huey.task()
    def noop(index: int) -> None:
        pass

    started = time.perf_counter()
    _produce(noop, count, spec.get("producers", 1))
    elapsed = time.perf_counter() - started
    return {"jobs": count, "elapsed_s": elapsed, "jobs_per_s": count / elapsed}


def idle_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Time from the enqueue call to the task's start, consumer idle.

    Huey's workers poll an empty queue with a growing pause (0.1 s at
    first, by default), so the figure depends on how long the queue was
    idle. Each sample waits *gap_s* after the previous task started.
    """
    path = Path(spec["workdir"]) / "huey.db"
    samples: int = spec["samples"]
    gap_s: float = spec.get("gap_s", 0.02)
    huey = _huey(path, spec.get("fsync"))
    started_at: list[float] = []
    started = threading.Event()

    @huey.task()
    def probe(index: int) -> None:
        started_at.append(time.perf_counter())
        started.set()

    consumer = _consumer(huey)
    consumer.start()
    latencies = []
    deadline = Deadline(spec.get("timeout_s", 120), "Huey idle-latency samples")
    try:
        time.sleep(0.2)
        for index in range(samples):
            deadline.check()
            time.sleep(gap_s)
            started.clear()
            begin = time.perf_counter()
            probe(index)
            if not started.wait(timeout=30):
                raise TimeoutError("a Huey task did not start within 30 s")
            latencies.append(started_at[-1] - begin)
    finally:
        consumer.stop(graceful=True)
    return latency_summary(latencies)


def schedule_lateness(spec: dict[str, Any]) -> dict[str, Any]:
    """Lateness of tasks scheduled 1 s ahead while 1,000 tasks/s run."""
    path = Path(spec["workdir"]) / "huey.db"
    window_s: float = spec["window_s"]
    warmup_s: float = spec.get("warmup_s", 1.0)
    delay_s: float = spec.get("delay_s", 1.0)
    interval_s: float = spec.get("probe_interval_s", 0.05)
    load_rate: int = spec.get("load_rate", 1000)
    load_threads = 10
    huey = _huey(path, spec.get("fsync"))
    load_done = ThreadCountdown(-1)
    lateness: list[float] = []
    lock = threading.Lock()

    @huey.task()
    def load(index: int) -> None:
        load_done.hit()

    @huey.task()
    def probe(due: float) -> None:
        late = time.time() - due
        with lock:
            lateness.append(late)

    consumer = _consumer(huey)
    consumer.start()
    start = time.monotonic()
    load_end = start + warmup_s + window_s + delay_s + 2.0
    period = load_threads / load_rate

    def produce_load(offset: int) -> None:
        for index in range(int((load_end - start) / period) + 1):
            pause = start + offset / load_rate + index * period - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            load(index)

    producers = [
        threading.Thread(target=produce_load, args=(offset,))
        for offset in range(load_threads)
    ]
    sent = 0
    try:
        for thread in producers:
            thread.start()
        time.sleep(warmup_s)
        load_at_window = load_done.count
        window_start = time.monotonic()
        while time.monotonic() < window_start + window_s:
            due = time.time() + delay_s
            probe.schedule(args=(due,), delay=delay_s)
            sent += 1
            pause = window_start + sent * interval_s - time.monotonic()
            if pause > 0:
                time.sleep(pause)
        deadline = Deadline(delay_s + 30, "Huey scheduled tasks")
        while len(lateness) < sent:
            deadline.check()
            time.sleep(0.01)
        load_rate_seen = (load_done.count - load_at_window) / (
            time.monotonic() - window_start
        )
    finally:
        for thread in producers:
            thread.join()
        consumer.stop(graceful=True)
    result = latency_summary(lateness)
    result["load_jobs_per_s"] = load_rate_seen
    return result
