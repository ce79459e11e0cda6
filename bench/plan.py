"""The rows of the benchmark: what runs, with which counts, against which target."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

POSTGRES = ("127.0.0.1", 5432)
REDIS = ("127.0.0.1", 6379)


@dataclass(frozen=True)
class Entry:
    """One system, or one configuration of it, measured in a row."""

    key: str
    system: str
    case: str
    params: dict[str, Any]
    requires: tuple[str, ...] = ()
    server: tuple[str, int] | None = None
    timeout_s: float = 1800.0


@dataclass(frozen=True)
class Metric:
    """A figure shown for every entry of a row."""

    key: str
    label: str
    unit: str
    higher_is_better: bool = True


@dataclass(frozen=True)
class Target:
    """A bound on one figure of one entry, or on its ratio to another entry.

    ``stat`` is the summary that is compared: ``median`` of the runs, or
    ``max`` where the worst run matters. A target with ``aim`` set is
    reported as an aim rather than a requirement.
    """

    entry: str
    metric: str
    op: str
    value: float
    peer: str | None = None
    stat: str = "median"
    aim: bool = False

    def describe(self) -> str:
        subject = f"÷ {self.peer}" if self.peer else ""
        stat = "" if self.stat == "median" else f" ({self.stat} of runs)"
        return f"{subject} {self.op} {self.value:g}{stat}".strip()


@dataclass(frozen=True)
class Row:
    """One measure: its entries, the figures shown and the targets."""

    key: str
    title: str
    description: str
    entries: tuple[Entry, ...]
    metrics: tuple[Metric, ...]
    targets: tuple[Target, ...] = ()
    reference: str = "pulse"
    setup: tuple[dict[str, Any], ...] = field(default=())


@dataclass(frozen=True)
class Sizes:
    """Work counts of one mode."""

    jobs: int
    server_jobs: int
    sqlite_peer_jobs: int
    enqueue_cap_s: float
    lateness_window_s: float
    lateness_warmup_s: float
    idle_samples: int
    huey_idle_samples: int
    backlog_big: int
    backlog_small: int
    backlog_drain: int


FULL = Sizes(
    jobs=100_000,
    server_jobs=10_000,
    sqlite_peer_jobs=20_000,
    enqueue_cap_s=60.0,
    lateness_window_s=20.0,
    lateness_warmup_s=1.0,
    idle_samples=500,
    huey_idle_samples=100,
    backlog_big=1_000_000,
    backlog_small=10_000,
    backlog_drain=10_000,
)

QUICK = Sizes(
    jobs=2_000,
    server_jobs=1_000,
    sqlite_peer_jobs=1_000,
    enqueue_cap_s=10.0,
    lateness_window_s=1.0,
    lateness_warmup_s=0.5,
    idle_samples=30,
    huey_idle_samples=10,
    backlog_big=20_000,
    backlog_small=2_000,
    backlog_drain=2_000,
)

JOBS_PER_S = Metric("jobs_per_s", "end-to-end", "jobs/s")
ENQUEUE_PER_S = Metric("enqueue_per_s", "enqueue phase", "jobs/s")
DRAIN_PER_S = Metric("drain_per_s", "drain phase", "jobs/s")
RATE = Metric("jobs_per_s", "throughput", "jobs/s")
P50 = Metric("p50_ms", "p50", "ms", higher_is_better=False)
P99 = Metric("p99_ms", "p99", "ms", higher_is_better=False)

HUEY = ("huey",)
PULSE = "pulse-trio"


def build(sizes: Sizes, backlog_dir: str) -> list[Row]:
    """Return the rows for one mode; *backlog_dir* contains the backlog files."""
    jobs = sizes.jobs
    big = f"{backlog_dir}/backlog-big.db"
    small = f"{backlog_dir}/backlog-small.db"
    pulse_normal = Entry(
        "pulse",
        PULSE,
        "cases_pulse.end_to_end",
        {"count": jobs, "synchronous": "NORMAL"},
    )
    return [
        Row(
            key="end_to_end_normal",
            title="End-to-end throughput, synchronous=NORMAL",
            description=(
                "Enqueue then drain: 100 tasks enqueue, each awaiting every "
                "enqueue, then 4 workers run the no-op jobs"
            ),
            entries=(
                pulse_normal,
                Entry(
                    "huey-fsync-off",
                    "Huey SqliteHuey, fsync off",
                    "cases_huey.end_to_end",
                    {"count": jobs, "fsync": False},
                    requires=HUEY,
                ),
                Entry(
                    "ceiling-normal",
                    "raw sqlite3 ceiling, NORMAL",
                    "ceiling.end_to_end",
                    {"count": jobs, "synchronous": "NORMAL"},
                ),
                Entry(
                    "saq",
                    "SAQ on Redis (no persistence)",
                    "cases_servers.saq_end_to_end",
                    {"count": sizes.server_jobs},
                    requires=("saq", "redis"),
                    server=REDIS,
                ),
            ),
            metrics=(JOBS_PER_S, ENQUEUE_PER_S, DRAIN_PER_S),
            targets=(
                Target("pulse", "jobs_per_s", ">=", 20_000),
                Target("pulse", "jobs_per_s", ">=", 2, peer="huey-fsync-off"),
                Target(
                    "pulse", "jobs_per_s", ">=", 0.3, peer="ceiling-normal", aim=True
                ),
            ),
        ),
        Row(
            key="end_to_end_full",
            title="End-to-end throughput, synchronous=FULL",
            description="The same as above with fsync on every commit",
            entries=(
                Entry(
                    "pulse",
                    PULSE,
                    "cases_pulse.end_to_end",
                    {"count": jobs, "synchronous": "FULL"},
                ),
                Entry(
                    "huey-default",
                    "Huey SqliteHuey, default (FULL)",
                    "cases_huey.end_to_end",
                    {"count": jobs, "fsync": None},
                    requires=HUEY,
                ),
                Entry(
                    "ceiling-full",
                    "raw sqlite3 ceiling, FULL",
                    "ceiling.end_to_end",
                    {"count": jobs, "synchronous": "FULL"},
                ),
                Entry(
                    "persist-queue",
                    "persist-queue SQLiteAckQueue (FULL)",
                    "cases_persist_queue.end_to_end",
                    {"count": sizes.sqlite_peer_jobs},
                    requires=("persistqueue",),
                ),
                Entry(
                    "procrastinate",
                    "procrastinate on PostgreSQL (fsync on)",
                    "cases_servers.procrastinate_end_to_end",
                    {"count": sizes.server_jobs},
                    requires=("procrastinate", "psycopg"),
                    server=POSTGRES,
                ),
            ),
            metrics=(JOBS_PER_S, ENQUEUE_PER_S, DRAIN_PER_S),
            targets=(
                Target("pulse", "jobs_per_s", ">=", 10_000),
                Target("pulse", "jobs_per_s", ">=", 5, peer="huey-default"),
                Target("pulse", "jobs_per_s", ">=", 0.3, peer="ceiling-full", aim=True),
            ),
        ),
        Row(
            key="drain_floors",
            title="Drain with 4 workers, against its floors",
            description=(
                "The drain phase of pulse-trio's NORMAL end-to-end run, against "
                "plain sqlite3 running pulse-trio's statements with at most 4 "
                "jobs claimed a transaction (each claim commits before its jobs "
                "start, as with 4 workers), against trio handing jobs to 4 "
                "worker tasks with no database, and against the ceiling's table "
                "of one index claiming 4 jobs a transaction"
            ),
            entries=(
                pulse_normal,
                Entry(
                    "ceiling-4",
                    "raw sqlite3, NORMAL, at most 4 jobs claimed a commit",
                    "ceiling.end_to_end",
                    {"count": jobs, "synchronous": "NORMAL", "workers": 4},
                ),
                Entry(
                    "queue-sql",
                    "pulse-trio's statements and table, plain sqlite3, 4 jobs a commit",
                    "floor.queue_statements",
                    {"count": jobs, "workers": 4},
                ),
                Entry(
                    "trio-handoff",
                    "trio hand-offs to 4 worker tasks, no database",
                    "floor.trio_handoff",
                    {"count": jobs, "workers": 4},
                ),
            ),
            metrics=(DRAIN_PER_S,),
        ),
        Row(
            key="enqueue_single",
            title="One task awaiting each enqueue in turn",
            description=(
                "Running: the queue runs with no handler, so requests go "
                "through its persistence task. Not running: each enqueue "
                f"commits directly. A run stops after {sizes.enqueue_cap_s:g} s"
            ),
            entries=(
                Entry(
                    "pulse",
                    f"{PULSE}, queue running",
                    "cases_pulse.enqueue",
                    {
                        "count": jobs,
                        "style": "single",
                        "running": True,
                        "cap_s": sizes.enqueue_cap_s,
                    },
                ),
                Entry(
                    "pulse-not-running",
                    f"{PULSE}, queue not running",
                    "cases_pulse.enqueue",
                    {
                        "count": jobs,
                        "style": "single",
                        "running": False,
                        "cap_s": sizes.enqueue_cap_s,
                    },
                ),
                Entry(
                    "huey-fsync-off",
                    "Huey SqliteHuey, fsync off, 1 thread",
                    "cases_huey.enqueue",
                    {"count": jobs, "fsync": False, "producers": 1},
                    requires=HUEY,
                ),
            ),
            metrics=(RATE,),
            targets=(
                Target("pulse", "jobs_per_s", ">=", 15_000),
                Target("pulse-not-running", "jobs_per_s", ">=", 15_000),
            ),
        ),
        Row(
            key="enqueue_concurrent",
            title="100 tasks enqueueing at once (group commit)",
            description="100 tasks, each awaiting its enqueues in turn",
            entries=(
                Entry(
                    "pulse",
                    f"{PULSE}, queue running",
                    "cases_pulse.enqueue",
                    {
                        "count": jobs,
                        "style": "concurrent",
                        "running": True,
                        "cap_s": sizes.enqueue_cap_s,
                    },
                ),
                Entry(
                    "pulse-not-running",
                    f"{PULSE}, queue not running",
                    "cases_pulse.enqueue",
                    {
                        "count": jobs,
                        "style": "concurrent",
                        "running": False,
                        "cap_s": sizes.enqueue_cap_s,
                    },
                ),
                Entry(
                    "huey-fsync-off",
                    "Huey SqliteHuey, fsync off, 4 threads",
                    "cases_huey.enqueue",
                    {"count": jobs, "fsync": False, "producers": 4},
                    requires=HUEY,
                ),
            ),
            metrics=(RATE,),
            targets=(Target("pulse", "jobs_per_s", ">=", 60_000),),
        ),
        Row(
            key="enqueue_bulk",
            title="Bulk enqueue_many(name, payloads, config)",
            description="One task awaits enqueue_many calls of 1,000 payloads",
            entries=(
                Entry(
                    "pulse",
                    f"{PULSE}, queue running",
                    "cases_pulse.enqueue",
                    {
                        "count": jobs,
                        "style": "bulk",
                        "running": True,
                        "batch": 1000,
                        "cap_s": sizes.enqueue_cap_s,
                    },
                ),
                Entry(
                    "pulse-not-running",
                    f"{PULSE}, queue not running",
                    "cases_pulse.enqueue",
                    {
                        "count": jobs,
                        "style": "bulk",
                        "running": False,
                        "batch": 1000,
                        "cap_s": sizes.enqueue_cap_s,
                    },
                ),
                Entry(
                    "ceiling-insert",
                    "raw sqlite3 executemany, 1,000 rows a commit",
                    "ceiling.insert_only",
                    {"count": jobs, "batch": 1000, "synchronous": "NORMAL"},
                ),
            ),
            metrics=(RATE,),
            targets=(
                Target("pulse", "jobs_per_s", ">=", 150_000),
                Target("pulse-not-running", "jobs_per_s", ">=", 150_000),
            ),
        ),
        Row(
            key="schedule_lateness",
            title="Lateness of a job scheduled 1 s ahead while 1,000 jobs/s run",
            description=(
                "A probe every 50 ms scheduled 1 s ahead, for "
                f"{sizes.lateness_window_s:g} s; lateness is the handler's start "
                "minus the due time"
            ),
            entries=(
                Entry(
                    "pulse",
                    PULSE,
                    "cases_pulse.schedule_lateness",
                    {
                        "window_s": sizes.lateness_window_s,
                        "warmup_s": sizes.lateness_warmup_s,
                    },
                ),
                Entry(
                    "huey-fsync-off",
                    "Huey SqliteHuey, fsync off",
                    "cases_huey.schedule_lateness",
                    {
                        "window_s": sizes.lateness_window_s,
                        "warmup_s": sizes.lateness_warmup_s,
                        "fsync": False,
                    },
                    requires=HUEY,
                ),
            ),
            metrics=(P50, P99, Metric("load_jobs_per_s", "load seen", "jobs/s")),
            targets=(
                Target("pulse", "p50_ms", "<=", 2),
                Target("pulse", "p99_ms", "<=", 10),
            ),
        ),
        Row(
            key="idle_latency",
            title="Enqueue to handler start on an idle queue",
            description="From the call of enqueue to the handler's first line",
            entries=(
                Entry(
                    "pulse",
                    PULSE,
                    "cases_pulse.idle_latency",
                    {"samples": sizes.idle_samples},
                ),
                Entry(
                    "huey-fsync-off",
                    "Huey SqliteHuey, fsync off",
                    "cases_huey.idle_latency",
                    {"samples": sizes.huey_idle_samples, "fsync": False},
                    requires=HUEY,
                ),
            ),
            metrics=(P50, P99),
            targets=(Target("pulse", "p50_ms", "<=", 1),),
        ),
        Row(
            key="backlog",
            title=f"{sizes.backlog_big:,} pending jobs in the file",
            description=(
                f"Open a copy of a file with {sizes.backlog_big:,} pending jobs and "
                f"drain {sizes.backlog_drain:,}, against a file with "
                f"{sizes.backlog_small:,}"
            ),
            entries=(
                Entry(
                    "pulse",
                    f"{PULSE}, {sizes.backlog_big:,} pending",
                    "cases_pulse.backlog",
                    {"template": big, "drain": sizes.backlog_drain},
                ),
                Entry(
                    "pulse-small",
                    f"{PULSE}, {sizes.backlog_small:,} pending",
                    "cases_pulse.backlog",
                    {"template": small, "drain": sizes.backlog_drain},
                ),
            ),
            metrics=(
                Metric("startup_s", "open and start", "s", higher_is_better=False),
                Metric("peak_rss_mb", "peak RSS", "MiB", higher_is_better=False),
                RATE,
            ),
            targets=(
                Target("pulse", "startup_s", "<", 1),
                Target("pulse", "peak_rss_mb", "<", 150),
                Target("pulse", "jobs_per_s", ">=", 0.8, peer="pulse-small"),
            ),
            setup=(
                {
                    "case": "cases_pulse.build_backlog",
                    "path": big,
                    "count": sizes.backlog_big,
                },
                {
                    "case": "cases_pulse.build_backlog",
                    "path": small,
                    "count": sizes.backlog_small,
                },
            ),
        ),
        Row(
            key="backlog_drain_all",
            title=f"Memory while draining all {sizes.backlog_big:,} pending jobs",
            description=(
                f"Drain every job of a copy of the file with {sizes.backlog_big:,} "
                "pending jobs, reading the resident set size 100 times on the way; "
                "growth is the largest reading minus the first"
            ),
            entries=(
                Entry(
                    "pulse",
                    f"{PULSE}, {sizes.backlog_big:,} pending",
                    "cases_pulse.backlog",
                    {"template": big, "drain": sizes.backlog_big, "rss_samples": 100},
                ),
            ),
            metrics=(
                Metric("rss_growth_mb", "RSS growth", "MiB", higher_is_better=False),
                Metric("peak_rss_mb", "peak RSS", "MiB", higher_is_better=False),
                RATE,
            ),
            targets=(Target("pulse", "rss_growth_mb", "<=", 10, stat="max"),),
            setup=(
                {
                    "case": "cases_pulse.build_backlog",
                    "path": big,
                    "count": sizes.backlog_big,
                },
            ),
        ),
        Row(
            key="event_loop_block",
            title="Longest single block of the event loop by the library",
            description=(
                "A trio Instrument times every task step of the library's tasks "
                "during whole runs"
            ),
            entries=(
                Entry(
                    "pulse",
                    f"{PULSE}, end to end, NORMAL",
                    "cases_pulse.end_to_end",
                    {"count": jobs, "synchronous": "NORMAL", "step_timer": True},
                ),
                Entry(
                    "pulse-full",
                    f"{PULSE}, end to end, FULL",
                    "cases_pulse.end_to_end",
                    {"count": jobs, "synchronous": "FULL", "step_timer": True},
                ),
                Entry(
                    "pulse-backlog",
                    f"{PULSE}, {sizes.backlog_big:,} pending",
                    "cases_pulse.backlog",
                    {
                        "template": big,
                        "drain": sizes.backlog_drain,
                        "step_timer": True,
                    },
                ),
            ),
            metrics=(
                Metric(
                    "step_timer.longest_library_step_ms",
                    "longest step",
                    "ms",
                    higher_is_better=False,
                ),
                Metric(
                    "step_timer.steps_over_10ms",
                    "steps over 10 ms",
                    "steps",
                    higher_is_better=False,
                ),
            ),
            targets=(
                Target(
                    "pulse", "step_timer.longest_library_step_ms", "<=", 10, stat="max"
                ),
                Target(
                    "pulse-full",
                    "step_timer.longest_library_step_ms",
                    "<=",
                    10,
                    stat="max",
                ),
                Target(
                    "pulse-backlog",
                    "step_timer.longest_library_step_ms",
                    "<=",
                    10,
                    stat="max",
                ),
            ),
            setup=(
                {
                    "case": "cases_pulse.build_backlog",
                    "path": big,
                    "count": sizes.backlog_big,
                },
            ),
        ),
    ]
