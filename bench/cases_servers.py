"""Measurements of queues on a server: procrastinate (PostgreSQL), SAQ (Redis).

Both run on asyncio with 4 jobs at once, and both are given the same two
phases as the SQLite queues: 100 tasks enqueue, each awaiting its enqueue,
then a worker drains the jobs. The servers are the local ones on
127.0.0.1; each run works in its own PostgreSQL schema or Redis key prefix
and deletes it afterwards.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from .common import split_count

WORKERS = 4
PRODUCERS = 100

POSTGRES_SCHEMA = "pulse_trio_bench"
POSTGRES_CONNINFO = (
    "host=127.0.0.1 port=5432 dbname=test user=postgres "
    f"options='-c search_path={POSTGRES_SCHEMA}'"
)
REDIS_URL = "redis://127.0.0.1:6379/15"


async def _produce(defer: Any, count: int) -> float:
    async def work(share: int) -> None:
        for index in range(share):
            await defer(index)

    started = time.perf_counter()
    async with asyncio.TaskGroup() as group:
        for share in split_count(count, PRODUCERS):
            group.create_task(work(share))
    return time.perf_counter() - started


def _figures(count: int, enqueue_s: float, drain_s: float) -> dict[str, Any]:
    return {
        "jobs": count,
        "enqueue_s": enqueue_s,
        "drain_s": drain_s,
        "enqueue_per_s": count / enqueue_s,
        "drain_per_s": count / drain_s,
        "jobs_per_s": count / (enqueue_s + drain_s),
    }


# -- procrastinate -------------------------------------------------------


async def _reset_schema() -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")
        await conn.execute(f"CREATE SCHEMA {POSTGRES_SCHEMA}")


async def _drop_schema() -> None:
    import psycopg

    async with await psycopg.AsyncConnection.connect(
        "host=127.0.0.1 port=5432 dbname=test user=postgres", autocommit=True
    ) as conn:
        await conn.execute(f"DROP SCHEMA IF EXISTS {POSTGRES_SCHEMA} CASCADE")


def procrastinate_end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """Defer *count* jobs, then drain them with ``run_worker_async(wait=False)``.

    The worker returns once no job is left, so the drain ends with every
    job's status committed. Jobs are kept after they succeed, as pulse-trio
    keeps completed rows.
    """
    import procrastinate

    count: int = spec["count"]

    async def main() -> dict[str, Any]:
        await _reset_schema()
        app = procrastinate.App(
            connector=procrastinate.PsycopgConnector(conninfo=POSTGRES_CONNINFO)
        )
        ran = 0

        @app.task(name="noop")
        async def noop(index: int) -> None:
            nonlocal ran
            ran += 1

        try:
            async with app.open_async():
                await app.schema_manager.apply_schema_async()

                async def defer(index: int) -> None:
                    await noop.defer_async(index=index)

                enqueue_s = await _produce(defer, count)
                started = time.perf_counter()
                await app.run_worker_async(
                    concurrency=WORKERS, wait=False, install_signal_handlers=False
                )
                drain_s = time.perf_counter() - started
        finally:
            await _drop_schema()
        if ran != count:
            raise RuntimeError(f"procrastinate ran {ran} of {count} jobs")
        return _figures(count, enqueue_s, drain_s)

    return asyncio.run(main())


# -- SAQ -----------------------------------------------------------------


def saq_end_to_end(spec: dict[str, Any]) -> dict[str, Any]:
    """Enqueue *count* jobs, then drain them with a SAQ worker.

    The drain ends once the handlers have run *count* times and the queue
    has no incomplete job, which SAQ records after each job finishes.
    """
    from saq import Queue, Worker

    count: int = spec["count"]
    name = f"pulse-trio-bench-{os.getpid()}"

    async def main() -> dict[str, Any]:
        queue = Queue.from_url(REDIS_URL, name=name)
        ran = 0
        done = asyncio.Event()

        async def noop(ctx: Any, *, index: int) -> None:
            nonlocal ran
            ran += 1
            if ran == count:
                done.set()

        try:
            await queue.connect()

            async def defer(index: int) -> None:
                await queue.enqueue("noop", index=index)

            enqueue_s = await _produce(defer, count)
            worker = Worker(queue, functions=[("noop", noop)], concurrency=WORKERS)
            started = time.perf_counter()
            task = asyncio.create_task(worker.start())
            await asyncio.wait_for(done.wait(), timeout=spec.get("timeout_s", 1800))
            async with asyncio.timeout(60):
                # SAQ records completion in Redis and sets no local event for it.
                while await queue.count("incomplete"):  # noqa: ASYNC110
                    await asyncio.sleep(0.0005)
            drain_s = time.perf_counter() - started
            await worker.stop()
            task.cancel()
        finally:
            await _delete_keys(queue, name)
            await queue.disconnect()
        return _figures(count, enqueue_s, drain_s)

    return asyncio.run(main())


async def _delete_keys(queue: Any, name: str) -> None:
    keys = [key async for key in queue.redis.scan_iter(match=f"*{name}*")]
    for start in range(0, len(keys), 1000):
        await queue.redis.delete(*keys[start : start + 1000])
