"""Measurements of pulse-trio. Each function runs in its own process.

Every function takes the measurement's parameters as a dict and returns a
dict of figures. Handlers are ``async def`` no-ops, the database is a file
in WAL mode, and every enqueue is awaited until its commit.
"""

from __future__ import annotations

import itertools
import shutil
import sqlite3
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from pulse_trio import JobConfig, Pulse

from .common import (
    JOB_NAME,
    current_rss_mb,
    latency_summary,
    peak_rss_mb,
    read_only,
    remove_database,
    split_count,
)

WORKERS = 4
"""Jobs that run at once in every pulse-trio measurement."""

POLL_INTERVAL = 0.0005
"""Seconds between two row counts while waiting for the last commits."""

COMMIT_WAIT_LIMIT = 60.0
"""Seconds to wait for the last completions to commit after the handlers ran."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

# Counting rows with status 'running' reads the partial index on running
# jobs, so a poll costs microseconds however many rows the table has.
_COUNT_RUNNING = "SELECT count(*) FROM pulse_jobs WHERE status = 'running'"
_COUNT_COMPLETED = "SELECT count(*) FROM pulse_jobs WHERE status = 'completed'"


class Countdown:
    """Counts handler runs and sets an event once *target* have started."""

    def __init__(self, target: int) -> None:
        self.target = target
        self.count = 0
        self.first_at: float | None = None
        self.reached = trio.Event()

    async def handler(self, payload: Any) -> None:
        if self.first_at is None:
            self.first_at = time.perf_counter()
        self.count += 1
        if self.count == self.target:
            self.reached.set()


class RssSampler(Countdown):
    """A countdown that also samples the resident set size every *every*
    runs, to show whether memory grows during a long drain."""

    def __init__(self, target: int, every: int) -> None:
        super().__init__(target)
        self.every = every
        self.samples: list[float] = []

    async def handler(self, payload: Any) -> None:
        if self.count % self.every == 0:
            self.samples.append(current_rss_mb())
        await super().handler(payload)


class StepTimer(trio.abc.Instrument):
    """Records how long each task step blocks the event loop, by task name.

    The step counts cover only the library's tasks, whose names start with
    ``pulse_trio.``. The longest step is kept for every task.
    """

    def __init__(self) -> None:
        self.longest: dict[str, float] = {}
        self.steps = 0
        self.steps_over_1ms = 0
        self.steps_over_10ms = 0
        self._started = 0.0

    def before_task_step(self, task: trio.lowlevel.Task) -> None:
        self._started = time.perf_counter()

    def after_task_step(self, task: trio.lowlevel.Task) -> None:
        elapsed = time.perf_counter() - self._started
        if task.name.startswith("pulse_trio."):
            self.steps += 1
            if elapsed > 0.001:
                self.steps_over_1ms += 1
            if elapsed > 0.010:
                self.steps_over_10ms += 1
        if elapsed > self.longest.get(task.name, 0.0):
            self.longest[task.name] = elapsed

    def summary(self) -> dict[str, Any]:
        library = {
            name: seconds
            for name, seconds in self.longest.items()
            if name.startswith("pulse_trio.")
        }
        top_name = max(library, key=library.__getitem__, default="")
        any_name = max(self.longest, key=self.longest.__getitem__, default="")
        return {
            "longest_library_step_ms": library.get(top_name, 0.0) * 1000,
            "longest_library_task": top_name,
            "longest_any_step_ms": self.longest.get(any_name, 0.0) * 1000,
            "longest_any_task": any_name,
            "steps": self.steps,
            "steps_over_1ms": self.steps_over_1ms,
            "steps_over_10ms": self.steps_over_10ms,
            "longest_by_task_ms": {
                name: round(seconds * 1000, 3)
                for name, seconds in sorted(
                    self.longest.items(), key=lambda item: -item[1]
                )[:8]
            },
        }


def _run(
    main: Callable[[], Awaitable[dict[str, Any]]], spec: dict[str, Any]
) -> dict[str, Any]:
    timer = StepTimer() if spec.get("step_timer") else None
    result = trio.run(main, instruments=[timer] if timer else [])
    if timer is not None:
        result["step_timer"] = timer.summary()
    return result


def _profiler(spec: dict[str, Any]) -> Any:
    """Return a started pyinstrument profiler if the run is profiled."""
    folder = spec.get("profile_dir")
    if not folder:
        return None
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001, async_mode="disabled")
    profiler.start()
    return profiler


def _save_profile(profiler: Any, spec: dict[str, Any], phase: str) -> None:
    if profiler is None:
        return
    session = profiler.stop()
    session.save(Path(spec["profile_dir"]) / f"pulse-{phase}.pyisession")


async def _enqueue_concurrently(
    pulse: Pulse, count: int, tasks: int, stop_at: float = float("inf")
) -> int:
    """Enqueue *count* jobs from *tasks* tasks, each awaiting its enqueues."""
    done = 0

    async def produce(share: int) -> None:
        nonlocal done
        for index in range(share):
            if time.perf_counter() > stop_at:
                return
            await pulse.enqueue(JOB_NAME, index)
            done += 1

    async with trio.open_nursery() as nursery:
        for share in split_count(count, tasks):
            nursery.start_soon(produce, share)
    return done


async def _wait_none_running(path: Path) -> None:
    """Wait until no job is running, so every completion has committed."""
    with read_only(path) as conn:
        with trio.fail_after(COMMIT_WAIT_LIMIT):
            # The queue commits these rows on its own connection and sets no
            # event for them, so the only way to see them is to poll.
            while conn.execute(_COUNT_RUNNING).fetchone()[0]:  # noqa: ASYNC110
                await trio.sleep(POLL_INTERVAL)


def _count_completed(path: Path) -> int:
    with read_only(path) as conn:
        completed: int = conn.execute(_COUNT_COMPLETED).fetchone()[0]
        return completed


# -- end to end ----------------------------------------------------------


def end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """Enqueue *count* jobs from 100 tasks, then drain them with 4 workers.

    The enqueue phase runs a queue with no handler, so that group commit
    works and no job starts. The drain phase opens a second queue on the
    file with the handler. The drain ends when the handlers have run
    *count* times and a second connection counts no running row, which
    means that every completion has committed.
    """
    path = Path(spec["workdir"]) / "pulse.db"
    count: int = spec["count"]
    synchronous = spec.get("synchronous", "NORMAL")
    producers: int = spec.get("producers", 100)

    async def main() -> dict[str, Any]:
        remove_database(path)
        pulse = await Pulse.new(path, workers=WORKERS, synchronous=synchronous)
        profiler = _profiler(spec)
        async with pulse:
            started = time.perf_counter()
            await _enqueue_concurrently(pulse, count, producers)
            enqueue_s = time.perf_counter() - started
        _save_profile(profiler, spec, "enqueue")
        pulse.close()

        pulse = await Pulse.new(path, workers=WORKERS, synchronous=synchronous)
        countdown = Countdown(count)
        pulse.handle(JOB_NAME, countdown.handler)
        profiler = _profiler(spec)
        async with trio.open_nursery() as nursery:
            started = time.perf_counter()
            await nursery.start(pulse.run)
            await countdown.reached.wait()
            await _wait_none_running(path)
            drain_s = time.perf_counter() - started
            await pulse.shutdown_graceful()
        _save_profile(profiler, spec, "drain")
        pulse.close()
        completed = _count_completed(path)
        if completed != count:
            raise RuntimeError(f"{completed} of {count} jobs completed")
        return {
            "jobs": count,
            "synchronous": synchronous,
            "enqueue_s": enqueue_s,
            "drain_s": drain_s,
            "enqueue_per_s": count / enqueue_s,
            "drain_per_s": count / drain_s,
            "jobs_per_s": count / (enqueue_s + drain_s),
        }

    return _run(main, spec)


# -- enqueue -------------------------------------------------------------


def enqueue(spec: dict[str, Any]) -> dict[str, Any]:
    """Time *count* durable enqueues in one of three styles.

    ``single``: one task awaits each enqueue in turn. ``concurrent``: 100
    tasks do so at once. ``bulk``: one task awaits ``enqueue_many`` calls
    of *batch* payloads. With ``running`` the queue runs with no handler
    (so its persistence task batches the commits), else it is not started
    and each request commits on its own. A run stops early at *cap_s*.
    """
    path = Path(spec["workdir"]) / "pulse.db"
    count: int = spec["count"]
    style: str = spec["style"]
    running: bool = spec["running"]
    cap_s: float = spec.get("cap_s", float("inf"))
    batch: int = spec.get("batch", 1000)
    tenth = max(count // 10, 1)

    async def main() -> dict[str, Any]:
        remove_database(path)
        pulse = await Pulse.new(path, workers=WORKERS)
        marks: list[tuple[int, float]] = [(0, 0.0)]
        done = 0
        started = 0.0

        def record(jobs: int) -> None:
            nonlocal done
            before = done
            done += jobs
            if done // tenth > before // tenth:
                marks.append((done, time.perf_counter() - started))

        async def produce(share: int, stop_at: float) -> None:
            for index in range(share):
                if time.perf_counter() > stop_at:
                    return
                await pulse.enqueue(JOB_NAME, index)
                record(1)

        async def produce_bulk(stop_at: float) -> None:
            config = JobConfig()
            for start in range(0, count, batch):
                if time.perf_counter() > stop_at:
                    return
                size = min(batch, count - start)
                await pulse.enqueue_many(JOB_NAME, range(start, start + size), config)
                record(size)

        async def body() -> None:
            nonlocal started
            started = time.perf_counter()
            stop_at = started + cap_s
            if style == "bulk":
                await produce_bulk(stop_at)
                return
            tasks = 1 if style == "single" else spec.get("tasks", 100)
            async with trio.open_nursery() as nursery:
                for share in split_count(count, tasks):
                    nursery.start_soon(produce, share, stop_at)

        if running:
            async with pulse:
                await body()
                elapsed = time.perf_counter() - started
        else:
            await body()
            elapsed = time.perf_counter() - started
        pulse.close()
        tenths = [
            (jobs_after - jobs_before) / (end - begin)
            for (jobs_before, begin), (jobs_after, end) in itertools.pairwise(marks)
        ]
        return {
            "jobs": done,
            "requested": count,
            "capped": done < count,
            "elapsed_s": elapsed,
            "jobs_per_s": done / elapsed,
            "rate_by_tenth": [round(rate) for rate in tenths],
        }

    return _run(main, spec)


# -- latency -------------------------------------------------------------


def idle_latency(spec: dict[str, Any]) -> dict[str, Any]:
    """Time from the call of ``enqueue`` to the handler's start, queue idle.

    Each sample waits for the previous job's handler and then *gap_s*, so
    the queue is idle when the next enqueue starts.
    """
    path = Path(spec["workdir"]) / "pulse.db"
    samples: int = spec["samples"]
    gap_s: float = spec.get("gap_s", 0.02)

    async def main() -> dict[str, Any]:
        remove_database(path)
        pulse = await Pulse.new(path, workers=WORKERS)
        state: dict[str, Any] = {"event": trio.Event(), "started": 0.0}

        async def probe(payload: Any) -> None:
            state["started"] = trio.current_time()
            state["event"].set()

        pulse.handle(JOB_NAME, probe)
        latencies: list[float] = []
        enqueue_times: list[float] = []
        async with pulse:
            await trio.sleep(0.2)
            for index in range(samples):
                await trio.sleep(gap_s)
                state["event"] = trio.Event()
                begin = trio.current_time()
                await pulse.enqueue(JOB_NAME, index)
                enqueue_times.append(trio.current_time() - begin)
                with trio.fail_after(10):
                    await state["event"].wait()
                latencies.append(state["started"] - begin)
        pulse.close()
        result = latency_summary(latencies)
        result["enqueue_p50_ms"] = latency_summary(enqueue_times)["p50_ms"]
        return result

    return _run(main, spec)


def schedule_lateness(spec: dict[str, Any]) -> dict[str, Any]:
    """Lateness of jobs scheduled 1 s ahead while 1,000 jobs/s run.

    Ten tasks enqueue 100 no-op jobs a second each. After a warm-up, a
    probe task schedules one job every *probe_interval_s* for *window_s*,
    each due *delay_s* after the call. Lateness is the wall-clock start of
    the probe's handler minus its due time.
    """
    path = Path(spec["workdir"]) / "pulse.db"
    window_s: float = spec["window_s"]
    warmup_s: float = spec.get("warmup_s", 1.0)
    delay_s: float = spec.get("delay_s", 1.0)
    interval_s: float = spec.get("probe_interval_s", 0.05)
    load_rate: int = spec.get("load_rate", 1000)
    load_tasks = 10

    async def main() -> dict[str, Any]:
        remove_database(path)
        pulse = await Pulse.new(path, workers=WORKERS)
        load_done = 0
        lateness: list[float] = []

        async def load(payload: Any) -> None:
            nonlocal load_done
            load_done += 1

        async def probe(due_us: int) -> None:
            lateness.append((time.time_ns() // 1000 - due_us) / 1_000_000)

        pulse.handle("load", load)
        pulse.handle("probe", probe)
        async with pulse, trio.open_nursery() as nursery:
            start = trio.current_time()
            load_end = start + warmup_s + window_s + delay_s + 0.5
            period = load_tasks / load_rate

            async def produce_load(offset: int) -> None:
                for index in range(int((load_end - start) / period) + 1):
                    await trio.sleep_until(start + offset / load_rate + index * period)
                    await pulse.enqueue("load", index)

            for offset in range(load_tasks):
                nursery.start_soon(produce_load, offset)
            await trio.sleep(warmup_s)
            load_at_window = load_done
            window_start = trio.current_time()
            sent = 0
            while trio.current_time() < window_start + window_s:
                due_us = time.time_ns() // 1000 + round(delay_s * 1_000_000)
                due = _EPOCH + timedelta(microseconds=due_us)
                await pulse.schedule("probe", due_us, run_at=due)
                sent += 1
                await trio.sleep_until(window_start + sent * interval_s)
            with trio.fail_after(delay_s + 10):
                while len(lateness) < sent:  # noqa: ASYNC110 - bounded wait
                    await trio.sleep(0.01)
            load_rate_seen = (load_done - load_at_window) / (
                trio.current_time() - window_start
            )
            nursery.cancel_scope.cancel()
        pulse.close()
        result = latency_summary(lateness)
        result["load_jobs_per_s"] = load_rate_seen
        return result

    return _run(main, spec)


# -- a large backlog -----------------------------------------------------


def build_backlog(spec: dict[str, Any]) -> dict[str, Any]:
    """Write a file with *count* pending jobs, for :func:`backlog`."""
    path = Path(spec["path"])
    count: int = spec["count"]

    async def main() -> dict[str, Any]:
        remove_database(path)
        pulse = await Pulse.new(path, workers=WORKERS)
        started = time.perf_counter()
        chunk = 10_000
        for start in range(0, count, chunk):
            await pulse.enqueue_many(JOB_NAME, range(start, min(start + chunk, count)))
        elapsed = time.perf_counter() - started
        pulse.close()
        with read_only(path) as conn:
            pending = conn.execute("SELECT count(*) FROM pulse_jobs").fetchone()[0]
        return {"jobs": pending, "build_s": elapsed, "jobs_per_s": count / elapsed}

    result = _run(main, spec)
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    result["file_mb"] = path.stat().st_size / 2**20
    return result


def backlog(spec: dict[str, Any]) -> dict[str, Any]:
    """Open a copy of a file with a backlog and drain *drain* jobs from it.

    Reports the time to open the file and to start the queue, the time to
    the first handler, the drain throughput from the start, and the peak
    RSS of the process. The copy is fresh for every run, so the file is in
    the page cache (a warm start). Once *drain* handlers have started, a
    graceful shutdown lets the running jobs finish and commit, and the
    drain ends when it returns. Counting completed rows while the queue
    runs would scan the whole table on the event loop, because no index
    covers that count.

    With *rss_samples*, the resident set size is also read that many
    times, evenly over the drain. ``rss_growth_mb`` is the largest sample
    minus the first one.
    """
    template = Path(spec["template"])
    path = Path(spec["workdir"]) / "backlog.db"
    drain: int = spec["drain"]
    samples: int | None = spec.get("rss_samples")
    remove_database(path)
    shutil.copyfile(template, path)

    async def main() -> dict[str, Any]:
        rss_before = current_rss_mb()
        begin = time.perf_counter()
        pulse = await Pulse.new(path, workers=WORKERS)
        opened = time.perf_counter()
        countdown = (
            Countdown(drain)
            if samples is None
            else RssSampler(drain, max(drain // samples, 1))
        )
        pulse.handle(JOB_NAME, countdown.handler)
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            running = time.perf_counter()
            rss_started = current_rss_mb()
            await countdown.reached.wait()
            await pulse.shutdown_graceful()
            done = time.perf_counter()
        pulse.close()
        completed = _count_completed(path)
        assert countdown.first_at is not None
        sampled = {}
        if isinstance(countdown, RssSampler):
            sampled = {
                "rss_samples_mb": [round(mb, 2) for mb in countdown.samples],
                "rss_growth_mb": max(countdown.samples) - countdown.samples[0],
            }
        return {
            **sampled,
            "open_s": opened - begin,
            "startup_s": running - begin,
            "first_job_s": countdown.first_at - begin,
            "drain_s": done - running,
            "jobs": completed,
            "jobs_per_s": completed / (done - running),
            "rss_before_open_mb": rss_before,
            "rss_after_start_mb": rss_started,
            "peak_rss_mb": peak_rss_mb(),
        }

    return _run(main, spec)
