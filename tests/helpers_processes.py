"""Child processes for the tests that run several processes on one database.

Run as ``python helpers_processes.py ROLE CONFIG_JSON``. The roles:

``worker``
    Runs a queue until SIGTERM, then shuts down gracefully. Its handlers
    append one JSON line per run start and end to the log file.
``producer``
    Enqueues jobs without ever calling ``run()``, and appends the id of each
    job to the acknowledgement file once ``enqueue`` has returned. A
    restarted producer continues from the count in that file.
``enqueue_and_die``
    Enqueues one job, writes its id to stdout, and kills itself with SIGKILL.
``lock_holder``
    Takes the write lock of the database again and again, holding it for a
    few milliseconds each time, until SIGTERM.
``opener``
    Waits for a start file, opens the queue (creating the database if
    missing), enqueues one job, and writes the outcome to stdout.

The test process imports this module too, for :func:`read_log` and the
paths. Records carry ``time.monotonic_ns()``, which on Linux is one clock
for every process, so the test can order the runs of different processes.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HELPER = Path(__file__).resolve()


# -- the log of runs, shared by the test and the children -------------------


def append_record(path: str, record: dict[str, Any]) -> None:
    """Append one JSON line to *path* with a single ``O_APPEND`` write.

    One ``write`` of a short line to a local file opened with ``O_APPEND``
    lands whole at the end, so concurrent processes never interleave.
    """
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


def read_log(path: Path) -> list[dict[str, Any]]:
    """Return the records of a log file, skipping a torn last line.

    A process killed inside ``write`` can leave a partial line at the end.
    """
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def _record(path: str, event: str, **fields: Any) -> None:
    append_record(
        path,
        {"event": event, "pid": os.getpid(), "t": time.monotonic_ns(), **fields},
    )


# -- worker -----------------------------------------------------------------


def _register_handlers(pulse: Any, log: str) -> None:
    import trio

    from pulse_trio import current_job

    async def work(payload: dict[str, Any]) -> None:
        """Sleep, fail or hang, as the payload specifies for this attempt."""
        job = current_job()
        _record(log, "start", job=job.id, attempt=job.attempt)
        outcome = "cancelled"
        try:
            if job.attempt in payload.get("hang", ()):
                await trio.sleep(3600)
            await trio.sleep(payload.get("ms", 0) / 1000)
            if job.attempt in payload.get("fail", ()):
                outcome = "raised"
                raise RuntimeError(f"planned failure of attempt {job.attempt}")
            outcome = "ok"
        finally:
            _record(log, "end", job=job.id, attempt=job.attempt, outcome=outcome)

    async def suicide(payload: object) -> None:
        """Kill this process with SIGKILL in the middle of the run."""
        job = current_job()
        _record(log, "start", job=job.id, attempt=job.attempt)
        os.kill(os.getpid(), signal.SIGKILL)
        await trio.sleep(3600)

    pulse.handle("work", work)
    pulse.handle("suicide", suicide)


async def run_worker(config: dict[str, Any]) -> None:
    import trio

    from pulse_trio import Pulse

    pulse = await Pulse.new(
        config["db"], workers=config.get("workers", 2), lease=config["lease"]
    )
    _register_handlers(pulse, config["log"])
    with trio.open_signal_receiver(signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            await nursery.start(pulse.run)
            _record(config["log"], "ready")
            async for _ in signals:
                await pulse.shutdown_graceful(config.get("grace"))
                break
    pulse.close()


# -- producer ---------------------------------------------------------------


def _count_lines(path: Path) -> int:
    if not path.exists():
        return 0
    return path.read_bytes().count(b"\n")


async def run_producer(config: dict[str, Any]) -> None:
    """Enqueue ``config["payloads"][i]`` for each i not yet acknowledged.

    With ``pace`` set, the producer sleeps that many seconds after every
    ``pace_every`` jobs, so the queue stays short and a job that is
    recovered runs again soon rather than behind a long backlog.
    """
    import trio

    from pulse_trio import JobConfig, Pulse

    acks = Path(config["acks"])
    payloads: list[dict[str, Any]] = config["payloads"]
    job_config = JobConfig(**config.get("job_config", {}))
    pulse = await Pulse.new(config["db"])
    if "log" in config:
        _record(config["log"], "ready")
    # A job whose id was not written before a kill is stored but not
    # acknowledged, and it is enqueued again under a new id. That is allowed:
    # only acknowledged jobs must exist.
    pace, pace_every = config.get("pace", 0.0), config.get("pace_every", 1)
    for index, payload in enumerate(payloads[_count_lines(acks) :]):
        if pace and index % pace_every == 0:
            await trio.sleep(pace)
        job_id = await pulse.enqueue_with_config("work", payload, job_config)
        fd = os.open(acks, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{job_id}\n".encode())
        finally:
            os.close(fd)
    pulse.close()


async def run_enqueue_and_die(config: dict[str, Any]) -> None:
    from pulse_trio import Pulse

    pulse = await Pulse.new(config["db"], synchronous=config["synchronous"])
    job_id = await pulse.enqueue("work", {"ms": 0})
    os.write(sys.stdout.fileno(), f"{job_id}\n".encode())
    os.kill(os.getpid(), signal.SIGKILL)


async def run_opener(config: dict[str, Any]) -> None:
    import trio

    from pulse_trio import Pulse

    start = Path(config["start"])
    print("waiting", flush=True)
    with trio.fail_after(30):
        while not start.exists():
            await trio.sleep(0.001)
    try:
        pulse = await Pulse.new(config["db"])
        await pulse.enqueue("work", {"ms": 0})
        pulse.close()
    except Exception as exc:
        print(json.dumps({"ok": False, "error": f"{type(exc).__name__}: {exc}"}))
        return
    print(json.dumps({"ok": True}))


# -- lock holder ------------------------------------------------------------


def _lock_rounds(config: dict[str, Any]) -> Iterator[None]:
    stop = {"requested": False}

    def request_stop(signum: int, frame: object) -> None:
        stop["requested"] = True

    signal.signal(signal.SIGTERM, request_stop)
    while not stop["requested"]:
        yield


def run_lock_holder(config: dict[str, Any]) -> None:
    """Hold the write lock for ``hold_ms``, release it for ``gap_ms``, repeat."""
    conn = sqlite3.connect(config["db"], isolation_level=None, timeout=10)
    conn.execute("CREATE TABLE IF NOT EXISTS lock_holder_rounds (n INTEGER)")
    hold = config["hold_ms"] / 1000
    gap = config["gap_ms"] / 1000
    rounds = 0
    for _ in _lock_rounds(config):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO lock_holder_rounds VALUES (?)", (rounds,))
        if rounds == 0:
            print("locked", flush=True)
        time.sleep(hold)
        conn.execute("COMMIT")
        rounds += 1
        time.sleep(gap)
    conn.close()
    print(f"rounds {rounds}", flush=True)


# -- the test side: starting, killing and waiting for children --------------


class Children:
    """The child processes that one test started, and when each was killed.

    Only processes started here are ever signalled, and :meth:`stop_all`
    kills whichever of them still run when the test ends.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.killed_at: dict[int, int] = {}
        """``time.monotonic_ns()`` just before SIGKILL was sent, by pid."""

    def start(
        self, role: str, config: dict[str, Any], *, stdout: Any = subprocess.DEVNULL
    ) -> subprocess.Popen[bytes]:
        number = len(self.processes)
        stderr = open(self.folder / f"{role}-{number}.stderr", "wb")  # noqa: SIM115
        with stderr:
            process = subprocess.Popen(
                [sys.executable, str(HELPER), role, json.dumps(config)],
                stdout=stdout,
                stderr=stderr,
            )
        self.processes.append(process)
        return process

    def stderr_of(self, process: subprocess.Popen[bytes]) -> str:
        number = self.processes.index(process)
        matches = list(self.folder.glob(f"*-{number}.stderr"))
        return matches[0].read_text() if matches else ""

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        """Kill *process* with SIGKILL and reap it."""
        self.killed_at[process.pid] = time.monotonic_ns()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()


def main() -> None:
    role, config = sys.argv[1], json.loads(sys.argv[2])
    if role == "lock_holder":
        run_lock_holder(config)
        return
    import trio

    roles = {
        "worker": run_worker,
        "producer": run_producer,
        "enqueue_and_die": run_enqueue_and_die,
        "opener": run_opener,
    }
    trio.run(roles[role], config)


if __name__ == "__main__":
    main()
