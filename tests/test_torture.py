"""Torture: kill -9 loops over several processes, and shutdown races.

The kill loop runs a producer and two worker processes on one file and
kills one of them every few hundred milliseconds. The shutdown races run
under the mock clock, with jobs that finish at the very instant the queue
stops, repeated over several seeds of trio's scheduling order.
"""

from __future__ import annotations

import itertools
import json
import random
import signal
import subprocess
from collections import Counter, defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio

from pulse_trio import JobStatus, Pulse

from .helpers import read_file_rows
from .helpers_processes import Children, read_log

JOBS = 2000
KILL_ROUNDS = 25
MAX_RETRIES = 3
RUN_TIMEOUT = 0.25
"""Seconds before a run is cancelled as timed out; "hang" attempts hit it."""


@pytest.fixture
def children(tmp_path: Path) -> Iterator[Children]:
    started = Children(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


def torture_payloads(rng: random.Random) -> list[dict[str, Any]]:
    """Short runs, some failing once or always, some hanging until timeout."""
    payloads = []
    for _ in range(JOBS):
        payload: dict[str, Any] = {"ms": rng.randint(0, 20)}
        roll = rng.random()
        if roll < 0.10:
            payload["fail"] = [1]
        elif roll < 0.13:
            payload["fail"] = list(range(1, MAX_RETRIES + 2))  # always fails
        elif roll < 0.18:
            payload["hang"] = [1]
        elif roll < 0.22:
            # Long enough that a wrongly recovered copy would start while
            # this run still goes.
            payload["ms"] = rng.randint(100, 200)
        payloads.append(payload)
    return payloads


class Roles:
    """The producer and worker processes of the kill loop, restartable."""

    def __init__(self, children: Children, tmp_path: Path, payloads: list[Any]):
        self.children = children
        self.db = tmp_path / "queue.db"
        self.log = tmp_path / "runs.log"
        self.acks = tmp_path / "acks.txt"
        self.configs: dict[str, tuple[str, dict[str, Any]]] = {
            "producer": (
                "producer",
                {
                    "db": str(self.db),
                    "acks": str(self.acks),
                    "log": str(self.log),
                    "payloads": payloads,
                    # About 250 jobs a second, below what the workers run
                    # between restarts, so a recovered job runs again soon
                    # rather than behind a backlog.
                    "pace": 0.02,
                    "pace_every": 5,
                    "job_config": {
                        "max_retries": MAX_RETRIES,
                        "retry_delay": 0.02,
                        "max_retry_delay": 0.1,
                        "timeout": RUN_TIMEOUT,
                    },
                },
            ),
        }
        for name in ("worker-a", "worker-b"):
            self.configs[name] = (
                "worker",
                {"db": str(self.db), "log": str(self.log), "lease": 3.0, "workers": 4},
            )
        self.running: dict[str, subprocess.Popen[bytes]] = {}
        self.kills: Counter[str] = Counter()

    def start(self, name: str) -> None:
        role, config = self.configs[name]
        self.running[name] = self.children.start(role, config)

    def producer_done(self) -> bool:
        producer = self.running["producer"]
        if producer.poll() is None:
            return False
        assert producer.returncode == 0, self.children.stderr_of(producer)
        return True

    def ready(self) -> list[str]:
        """Names of the roles whose current process has opened its queue."""
        pids = {r["pid"] for r in read_log(self.log) if r["event"] == "ready"}
        return sorted(
            name
            for name, process in self.running.items()
            if process.pid in pids and process.poll() is None
        )

    def kill_and_restart(self, name: str) -> None:
        self.children.kill(self.running[name])
        self.kills[name] += 1
        self.start(name)


async def wait_until_settled(db: Path, timeout: float) -> None:
    """Wait until no job is waiting or running."""
    with trio.fail_after(timeout):
        while True:
            rows = read_file_rows(
                db,
                "SELECT count(*) AS n FROM pulse_jobs "
                "WHERE status NOT IN ('completed', 'dead')",
            )
            if rows[0]["n"] == 0:
                return
            await trio.sleep(0.1)


def run_intervals(
    records: list[dict[str, Any]], killed_at: dict[int, int]
) -> dict[str, list[tuple[int, int, int, int]]]:
    """Return each job's runs as (start, end, attempt, pid), in start order.

    A run without an end record ended when its process was killed. The kill
    time is taken just before SIGKILL was sent, so it is never later than
    the real end, and an overlap found with it is a real one.
    """
    ends = {
        (r["job"], r["attempt"], r["pid"]): r["t"]
        for r in records
        if r["event"] == "end"
    }
    runs: dict[str, list[tuple[int, int, int, int]]] = defaultdict(list)
    for record in records:
        if record["event"] != "start":
            continue
        key = (record["job"], record["attempt"], record["pid"])
        if key in ends:
            end = ends[key]
        else:
            assert record["pid"] in killed_at, (
                f"run {key} has no end, but its process was never killed"
            )
            end = max(record["t"], killed_at[record["pid"]])
        runs[record["job"]].append((record["t"], end, record["attempt"], record["pid"]))
    for job_runs in runs.values():
        job_runs.sort()
    return runs


def check_job(
    row: Any, job_runs: list[tuple[int, int, int, int]], outcomes: dict[Any, str]
) -> None:
    """Check one finished job against the runs that its handlers recorded."""
    job_id, attempts = row["id"], row["attempts"]
    errors = json.loads(row["errors"])
    for earlier, later in itertools.pairwise(job_runs):
        assert later[0] >= earlier[1], (
            f"job {job_id}: run {later} started before run {earlier} ended"
        )
    started = [attempt for _, _, attempt, _ in job_runs]
    assert len(started) == len(set(started)), f"job {job_id}: attempt started twice"
    assert all(1 <= attempt <= attempts for attempt in started)
    assert attempts <= MAX_RETRIES + 1

    if row["status"] == "completed":
        assert len(errors) == attempts - 1, f"job {job_id}: {errors}"
        last = [run for run in job_runs if run[2] == attempts]
        assert last, f"job {job_id}: completed by attempt {attempts}, never started"
        assert outcomes[(job_id, attempts, last[0][3])] == "ok"
    else:
        assert row["status"] == "dead"
        assert attempts == MAX_RETRIES + 1
        assert len(errors) == attempts, f"job {job_id}: {errors}"
    assert [entry["attempt"] for entry in errors] == list(range(1, len(errors) + 1))
    # A claimed attempt whose handler never started was cut short by a kill.
    for entry in errors:
        if entry["attempt"] not in started:
            assert entry["error"].startswith("WorkerLost"), (job_id, entry)


@pytest.mark.processes
async def test_kill_loop_loses_no_job(tmp_path: Path, children: Children) -> None:
    rng = random.Random(20240601)
    roles = Roles(children, tmp_path, torture_payloads(rng))
    pulse = await Pulse.new(roles.db)  # create the file before the children
    pulse.close()
    for name in roles.configs:
        roles.start(name)

    # A process is killed only once it has opened its queue, so each kill
    # hits a process at work rather than one still importing modules.
    with trio.fail_after(120):
        for _ in range(KILL_ROUNDS):
            await trio.sleep(rng.uniform(0.2, 0.4))
            while not (victims := roles.ready()):
                await trio.sleep(0.01)
            roles.kill_and_restart(rng.choice(victims))

    with trio.fail_after(60):
        while not roles.producer_done():
            await trio.sleep(0.05)
    await wait_until_settled(roles.db, timeout=60)
    for name in ("worker-a", "worker-b"):
        roles.running[name].send_signal(signal.SIGTERM)
    for name in ("worker-a", "worker-b"):
        worker = roles.running[name]
        assert worker.wait(timeout=30) == 0, children.stderr_of(worker)

    acked = roles.acks.read_text().split()
    rows = {
        row["id"]: row for row in read_file_rows(roles.db, "SELECT * FROM pulse_jobs")
    }
    records = read_log(roles.log)
    runs = run_intervals(records, children.killed_at)
    outcomes = {
        (r["job"], r["attempt"], r["pid"]): r["outcome"]
        for r in records
        if r["event"] == "end"
    }
    pids = [process.pid for process in children.processes]

    assert len(pids) == len(set(pids)), "a pid was reused; runs cannot be told apart"
    assert len(acked) == JOBS
    missing = [job_id for job_id in acked if job_id not in rows]
    assert missing == [], f"{len(missing)} acknowledged jobs are lost"
    statuses = Counter(row["status"] for row in rows.values())
    assert set(statuses) <= {"completed", "dead"}, statuses
    for row in rows.values():
        check_job(row, runs.get(row["id"], []), outcomes)
    assert sum(roles.kills.values()) == KILL_ROUNDS

    lost = sum(
        entry["error"].startswith("WorkerLost")
        for row in rows.values()
        for entry in json.loads(row["errors"])
    )
    print(
        f"\nkill loop: {len(rows)} jobs ({len(acked)} acknowledged), "
        f"{dict(statuses)}, {sum(len(r) for r in runs.values())} runs, "
        f"{lost} runs lost to kills, kills {dict(roles.kills)}"
    )


# -- shutdown racing jobs that finish at the same instant -------------------

GRACE = 5.0
RACE_WORKERS = 4
RACE_JOBS = 12


def seed_trio_scheduler(seed: int) -> None:
    """Fix trio's random choice of task order, where this trio version has it.

    trio shuffles the tasks that become ready together; seeding its private
    generator makes a failing order repeatable. Without it, each repetition
    still gets a fresh random order.
    """
    generator = getattr(getattr(trio, "_core", None), "_run", None)
    generator = getattr(generator, "_r", None)
    if isinstance(generator, random.Random):
        generator.seed(seed)


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("mode", ["graceful", "now"])
async def test_shutdown_racing_finishing_jobs(
    tmp_path: Path, mode: str, seed: int
) -> None:
    seed_trio_scheduler(seed)
    db = tmp_path / "queue.db"
    events: list[tuple[str, str]] = []
    all_started = trio.Event()
    started_at: list[float] = []

    async def timed(payload: tuple[str, float]) -> None:
        label, duration = payload
        events.append(("start", label))
        started_at.append(trio.current_time())
        if len(started_at) == RACE_WORKERS:
            all_started.set()
        await trio.sleep(duration)
        events.append(("end", label))

    first = await Pulse.new(db, workers=RACE_WORKERS)
    first.handle("timed", timed)
    labels = [f"job-{index}" for index in range(RACE_JOBS)]
    # Most runs end exactly at the cut-off; some a millisecond before or after.
    offsets = (0.0, 0.0, -0.001, 0.001)
    payloads = [
        (label, GRACE + offsets[index % len(offsets)])
        for index, label in enumerate(labels)
    ]
    ids = dict(zip(labels, await first.enqueue_many("timed", payloads), strict=True))
    async with trio.open_nursery() as nursery:
        await nursery.start(first.run)
        await all_started.wait()
        # The running jobs end GRACE after they started; the shutdown is
        # timed so that its cut-off falls on exactly that instant.
        if mode == "graceful":
            await trio.sleep(GRACE / 2)
            await first.shutdown_graceful(timeout=GRACE / 2)
        else:
            await trio.sleep_until(started_at[0] + GRACE)
            await first.shutdown_now()
    first_starts = set(started_at[:RACE_WORKERS])
    assert first_starts == {started_at[0]}, "the first jobs must start together"

    rows = {row["id"]: row for row in read_file_rows(db, "SELECT * FROM pulse_jobs")}
    assert [row["status"] for row in rows.values() if row["status"] == "running"] == []
    finished = {label for kind, label in events if kind == "end"}
    for label, job_id in ids.items():
        row = rows[job_id]
        if label in finished:
            assert row["status"] == "completed", (label, dict(row))
            assert row["attempts"] == 1
        else:
            # Cut off by the shutdown, or never started: pending again, and
            # the cut-off run does not count as an attempt.
            assert row["status"] == "pending", (label, dict(row))
            assert row["attempts"] == 0
    first.close()

    second = await Pulse.new(db, workers=RACE_WORKERS)
    second.handle("timed", timed)
    async with second:
        for job_id in ids.values():
            assert (await second.wait(job_id)).status is JobStatus.COMPLETED
    second.close()
    ended = Counter(label for kind, label in events if kind == "end")
    assert ended == Counter(labels), "each job finishes exactly once"
