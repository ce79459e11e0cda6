"""Crash recovery: jobs left running by a process that died."""

from __future__ import annotations

import signal
import sys
import textwrap
from pathlib import Path

import pytest
import trio

from pulse_trio import JobConfig, JobStatus, Pulse

from .helpers import read_file_rows

CHILD_TIMEOUT = 60.0
"""Real seconds one child process may take before the test fails."""

CHILD_SCRIPT = textwrap.dedent(
    """
    import os
    import signal
    import sys

    import trio

    from pulse_trio import Pulse


    async def main(path: str, exit_mode: str) -> None:
        pulse = await Pulse.new(path, workers=1)

        async def die(_: object) -> None:
            if exit_mode == "exit":
                os._exit(1)
            os.kill(os.getpid(), signal.SIGKILL)

        pulse.handle("die", die)
        # A child that finds no job to run stops on its own.
        with trio.move_on_after(20):
            await pulse.run()
        pulse.close()


    trio.run(main, sys.argv[1], sys.argv[2])
    """
)


async def run_child(script: Path, database: Path, exit_mode: str) -> int:
    with trio.fail_after(CHILD_TIMEOUT):
        result = await trio.run_process(
            [sys.executable, str(script), str(database), exit_mode],
            check=False,
            capture_stdout=True,
            capture_stderr=True,
        )
    return result.returncode


def job_state(database: Path, job_id: str) -> tuple[str, int, bool]:
    [row] = read_file_rows(
        database,
        "SELECT status, attempts, owner FROM pulse_jobs WHERE id = ?",
        (job_id,),
    )
    return row["status"], row["attempts"], row["owner"] is not None


@pytest.mark.processes
@pytest.mark.parametrize(
    ("exit_mode", "expected_code", "max_retries"),
    [("exit", 1, 2), ("kill", -signal.SIGKILL, 1)],
    ids=["os-exit", "sigkill"],
)
async def test_job_that_kills_process_ends_dead(
    tmp_path: Path, exit_mode: str, expected_code: int, max_retries: int
) -> None:
    database = tmp_path / "queue.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD_SCRIPT)
    producer = await Pulse.new(database)
    config = JobConfig(max_retries=max_retries, retry_delay=3600)
    job_id = await producer.enqueue_with_config("die", None, config)
    producer.close()

    for start in range(1, max_retries + 2):
        code = await run_child(script, database, exit_mode)
        assert code == expected_code, f"start {start}"
        # Each start recovers the run the previous one left, then dies in
        # its own run, which stays recorded as running.
        assert job_state(database, job_id) == ("running", start, True)

    survivor = await Pulse.new(database, workers=1)
    async with trio.open_nursery() as nursery:
        # Orphans are recovered before run() reports started.
        await nursery.start(survivor.run)
        job = await survivor.status(job_id)
        dead = await survivor.dead_jobs()
        await survivor.shutdown_graceful()
    survivor.close()

    assert job.status is JobStatus.DEAD
    assert job.attempts == max_retries + 1
    assert [error.attempt for error in job.errors] == list(range(1, max_retries + 2))
    for error in job.errors:
        assert error.error.startswith(f"WorkerLost: attempt {error.attempt} was")
    assert [dead_job.id for dead_job in dead] == [job_id]
    assert job_state(database, job_id) == ("dead", max_retries + 1, False)


@pytest.mark.processes
async def test_recovered_job_runs_again(tmp_path: Path) -> None:
    database = tmp_path / "queue.db"
    script = tmp_path / "child.py"
    script.write_text(CHILD_SCRIPT)
    producer = await Pulse.new(database)
    job_id = await producer.enqueue_with_config(
        "die", None, JobConfig(retry_delay=3600)
    )
    producer.close()

    assert await run_child(script, database, "exit") == 1

    survivor = await Pulse.new(database, workers=1)
    attempts: list[int] = []
    done = trio.Event()

    async def recover(_: object) -> None:
        attempts.append(len(attempts) + 1)
        done.set()

    survivor.handle("die", recover)
    async with survivor:
        with trio.fail_after(30):
            await done.wait()
            while (await survivor.status(job_id)).status is not JobStatus.COMPLETED:
                await trio.sleep(0.01)
    job = await survivor.status(job_id)
    survivor.close()

    # The lost run counts, and its retry is due at once, not after retry_delay.
    assert attempts == [1]
    assert job.status is JobStatus.COMPLETED
    assert job.attempts == 2
    [error] = job.errors
    assert error.error.startswith("WorkerLost: attempt 1 was interrupted")
    assert error.traceback == ""
