"""SQL statements, by name.

Waiting jobs (pending, scheduled, retrying) are the only rows in the partial
indexes that claims and due-time look-ups read, so finished rows never slow
down the hot path.
"""

WAITING = "status IN ('pending', 'scheduled', 'retrying')"

# Due jobs are stored as 'pending'; jobs due later as 'scheduled' (first
# run) or 'retrying' (after a failed run). Each claim first promotes the
# future jobs whose time has come to 'pending'. The claim itself then reads
# only the ready index, by name and in run order, so it never scans jobs
# that are not due or that this process has no handler for.
FUTURE = "status IN ('scheduled', 'retrying')"

CREATE_READY_INDEX = """
CREATE INDEX pulse_jobs_ready ON pulse_jobs (name, priority DESC, run_at, seq)
WHERE status = 'pending'
"""

CREATE_FUTURE_INDEX = f"""
CREATE INDEX pulse_jobs_future ON pulse_jobs (run_at, status) WHERE {FUTURE}
"""

CREATE_RUNNING_INDEX = """
CREATE INDEX pulse_jobs_running ON pulse_jobs (owner) WHERE status = 'running'
"""

CREATE_FINISHED_INDEX = """
CREATE INDEX pulse_jobs_finished ON pulse_jobs (status, finished_at)
WHERE status IN ('completed', 'dead')
"""

CREATE_FAILED_INDEX = """
CREATE INDEX pulse_jobs_failed ON pulse_jobs (last_failed_at)
WHERE last_failed_at IS NOT NULL
"""

# Rows are tuples in the order of the columns named here; see
# Store.insert.
INSERT_JOB = """
INSERT INTO pulse_jobs (
    id, name, payload, status, priority, max_retries, retry_delay_us,
    max_retry_delay_us, timeout_us, created_at, run_at
) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""

# Earliest due first, :limit at a time, so that thousands of jobs coming
# due at one instant do not make one long statement.
PROMOTE_DUE = f"""
UPDATE pulse_jobs SET status = 'pending' WHERE seq IN (
    SELECT seq FROM pulse_jobs WHERE {FUTURE} AND run_at <= :now
    ORDER BY run_at LIMIT :limit
)
"""

# One branch per handled name, each reading the ready index in run order;
# the outer query merges the branches. SQLite allows at most 500 terms in
# one compound SELECT, so with more names the caller runs READY_FOR_NAME in
# chunks of CLAIM_NAMES_PER_QUERY and claims the merged rows by seq.
CLAIM_NAMES_PER_QUERY = 50

READY_FOR_NAME = """
SELECT * FROM (
    SELECT seq, priority, run_at FROM pulse_jobs
    WHERE status = 'pending' AND name = ?
    ORDER BY priority DESC, run_at, seq LIMIT ?
)
"""

CLAIMED_COLUMNS = """
seq, id, name, payload, attempts, priority, run_at, max_retries,
retry_delay_us, max_retry_delay_us, timeout_us
"""

CLAIM_UPDATE = """
UPDATE pulse_jobs
SET status = 'running', attempts = attempts + 1, started_at = ?, owner = ?
"""


def claim_due(name_count: int) -> str:
    """Return the statement that claims due jobs of *name_count* names.

    Its parameters are the time, the owner, then each name with the limit,
    then the limit again.
    """
    branches = " UNION ALL ".join([READY_FOR_NAME] * name_count)
    return f"""{CLAIM_UPDATE}
WHERE status = 'pending' AND seq IN (
    SELECT seq FROM ({branches}) ORDER BY priority DESC, run_at, seq LIMIT ?
)
RETURNING {CLAIMED_COLUMNS}
"""


# RETURNING does not keep any order, so the caller sorts the claimed rows.
CLAIM_SEQS = f"""{CLAIM_UPDATE}
WHERE seq IN (SELECT value FROM json_each(?)) AND status = 'pending'
RETURNING {CLAIMED_COLUMNS}
"""

# Claims one job by id, for inline mode, where enqueue() runs the job it
# has just stored rather than whichever due job comes first.
CLAIM_JOB = f"""
UPDATE pulse_jobs
SET status = 'running', attempts = attempts + 1, started_at = :now,
    owner = :owner
WHERE id = :id AND {WAITING} AND run_at <= :now
RETURNING *
"""

NEXT_FUTURE_TIME = f"""
SELECT min(run_at) FROM pulse_jobs WHERE {FUTURE} AND run_at > :after
"""

HAS_READY = """
SELECT 1 FROM pulse_jobs
WHERE status = 'pending' AND name IN (SELECT value FROM json_each(:names))
LIMIT 1
"""

NEXT_FUTURE_TIME_FOR_NAMES = f"""
SELECT min(run_at) FROM pulse_jobs
WHERE {FUTURE} AND name IN (SELECT value FROM json_each(:names))
"""

# Every change to a running job names the owner and attempt that claimed
# it, so a stale worker cannot overwrite a newer state.
# The seq finds the row; the id makes sure that it is still the same job.
RUN_GUARD = """
seq = :seq AND id = :id AND status = 'running' AND owner = :owner
AND attempts = :attempt
"""

COMPLETE = f"""
UPDATE pulse_jobs
SET status = 'completed', finished_at = :now, owner = NULL
WHERE {RUN_GUARD}
"""

MAX_ERROR_HISTORY = 20
"""Errors of failed runs kept per job: the most recent ones.

Each failure rewrites the job's whole error history, so an unbounded one
would make every further failure of a job that fails often slower."""

FAIL = f"""
UPDATE pulse_jobs
SET status = :status, run_at = :run_at, finished_at = :finished_at,
    last_error = :error, last_failed_at = :now, owner = NULL,
    errors = json_insert(
        CASE WHEN json_array_length(errors) >= {MAX_ERROR_HISTORY}
            THEN json_remove(errors, '$[0]') ELSE errors END,
        '$[#]', json(:entry)
    )
WHERE {RUN_GUARD}
"""

RELEASE = f"""
UPDATE pulse_jobs
SET status = 'pending', attempts = attempts - 1, owner = NULL
WHERE {RUN_GUARD}
"""

RETRY_DEAD = """
UPDATE pulse_jobs
SET status = 'pending', attempts = 0, run_at = :now, started_at = NULL,
    finished_at = NULL
WHERE id = :id AND status = 'dead'
"""

SELECT_JOB = "SELECT * FROM pulse_jobs WHERE id = :id"

DELETE_JOB = "DELETE FROM pulse_jobs WHERE id = :id AND status != 'running'"

SELECT_DEAD = """
SELECT * FROM pulse_jobs WHERE status = 'dead'
ORDER BY finished_at, seq
"""

SELECT_RUNNING_OWNERS = """
SELECT DISTINCT owner FROM pulse_jobs WHERE status = 'running'
"""

SELECT_RUNNING_OF_OWNER = """
SELECT * FROM pulse_jobs WHERE status = 'running' AND owner IS :owner
"""

# Walks the distinct names of ready jobs through the ready index, one
# look-up per name, instead of scanning every ready job.
NEXT_READY_NAME = """
SELECT name FROM pulse_jobs WHERE status = 'pending' AND name > :after
ORDER BY name LIMIT 1
"""

COUNT_READY_FOR_NAME = """
SELECT count(*) FROM (
    SELECT 1 FROM pulse_jobs WHERE status = 'pending' AND name = :name
    LIMIT :cap
)
"""

UPSERT_OWNER = """
INSERT INTO pulse_owners (
    id, host, pid, process_start, pid_namespace, started_at, lease_until, handles
) VALUES (
    :id, :host, :pid, :process_start, :pid_namespace, :now, :lease_until, :handles
)
ON CONFLICT (id) DO UPDATE SET
    lease_until = excluded.lease_until, handles = excluded.handles
"""

SELECT_OWNER = "SELECT * FROM pulse_owners WHERE id = :id"

DELETE_OWNER = "DELETE FROM pulse_owners WHERE id = :id"

# Owners with no running job: candidates for deletion, which the caller
# deletes only once it finds them dead.
SELECT_UNUSED_OWNERS = """
SELECT * FROM pulse_owners
WHERE id NOT IN (
    SELECT owner FROM pulse_jobs WHERE status = 'running' AND owner IS NOT NULL
)
"""

# -- statistics and listings ---------------------------------------------

SELECT_OWNERS = "SELECT * FROM pulse_owners ORDER BY started_at, id"

COUNT_RUNNING_BY_OWNER = """
SELECT owner, count(*) AS jobs FROM pulse_jobs WHERE status = 'running'
GROUP BY owner
"""

# Due jobs by name: pending ones through the ready index, whose first
# column is the name, and future ones whose time has come.
COUNT_READY_BY_NAME = """
SELECT name, count(*) AS jobs FROM pulse_jobs WHERE status = 'pending'
GROUP BY name
"""

COUNT_COME_DUE_BY_NAME = f"""
SELECT name, count(*) AS jobs FROM pulse_jobs WHERE {FUTURE} AND run_at <= :now
GROUP BY name
"""

COUNT_READY = "SELECT count(*) FROM pulse_jobs WHERE status = 'pending'"

COUNT_FUTURE = f"""
SELECT status, run_at <= :now AS due, count(*) AS jobs FROM pulse_jobs
WHERE {FUTURE} GROUP BY status, due
"""

COUNT_WAITING_BY_PRIORITY = f"""
SELECT priority, count(*) AS jobs FROM pulse_jobs
WHERE {WAITING} GROUP BY priority
"""

COUNT_RUNNING = "SELECT count(*) FROM pulse_jobs WHERE status = 'running'"

COUNT_FINISHED = """
SELECT status, count(*) AS jobs FROM pulse_jobs
WHERE status IN ('completed', 'dead') GROUP BY status
"""

COUNT_COMPLETED_SINCE = """
SELECT count(*) FROM pulse_jobs
WHERE status = 'completed' AND finished_at >= :since
"""

COUNT_FAILED_SINCE = """
SELECT count(*) FROM pulse_jobs
WHERE last_failed_at IS NOT NULL AND last_failed_at >= :since
"""

OLDEST_DUE = f"""
SELECT min(run_at) FROM pulse_jobs WHERE {WAITING} AND run_at <= :now
"""
# NOTE: ready jobs have no index by run_at alone, so OLDEST_DUE and
# COUNT_WAITING_BY_PRIORITY read every waiting job; they serve monitoring,
# not the hot path.

# The status filters of list_jobs(), by reported status.
LIST_FILTERS = {
    "pending": f"status = 'pending' OR ({FUTURE} AND run_at <= :now)",
    "scheduled": "status = 'scheduled' AND run_at > :now",
    "retrying": "status = 'retrying' AND run_at > :now",
    "running": "status = 'running'",
    "completed": "status = 'completed'",
    "dead": "status = 'dead'",
}

LIST_JOBS = """
SELECT * FROM pulse_jobs
WHERE ({status_filter}) AND (:name IS NULL OR name = :name)
ORDER BY seq DESC LIMIT :limit
"""

# Bulk deletes read the jobs in windows of seqs, up to the last seq when
# the call started, so each read is a short range scan however few jobs
# match. They delete by id, because SQLite may give a deleted seq to a new
# job. They check the status filter again at deletion, so a job that
# started or changed in between is left alone.
SEQ_RANGE = "SELECT min(seq), max(seq) FROM pulse_jobs"

MATCHING_IN_WINDOW = """
SELECT {columns} FROM pulse_jobs
WHERE seq > :after AND seq <= :until
  AND ({status_filter}) AND status != 'running'
  AND (:name IS NULL OR name = :name)
"""

DELETE_IDS = """
DELETE FROM pulse_jobs
WHERE id IN (SELECT value FROM json_each(:ids))
  AND ({status_filter}) AND status != 'running'
RETURNING id, name, status
"""

# Purges and bulk retries work in chunks of :limit rows per transaction,
# so a large one never holds the write lock or the event loop for long.
# The literal status list lets SQLite use the partial index of finished
# jobs, which a bound parameter alone does not match.
COUNT_FINISHED_BEFORE = """
SELECT count(*) FROM pulse_jobs
WHERE status IN ('completed', 'dead') AND status = :status
  AND finished_at < :before
"""

PURGE_FINISHED = """
DELETE FROM pulse_jobs WHERE seq IN (
    SELECT seq FROM pulse_jobs
    WHERE status IN ('completed', 'dead') AND status = :status
      AND finished_at < :before
    ORDER BY finished_at LIMIT :limit
)
"""

# Pages through the jobs that died by :until, in the order of the index
# of finished jobs; :after_time and :after_seq are the last row of the
# previous page.
SELECT_DEAD_PAGE = """
SELECT finished_at, seq, id FROM pulse_jobs
WHERE status IN ('completed', 'dead') AND status = 'dead'
  AND (:name IS NULL OR name = :name) AND finished_at <= :until
  AND (finished_at, seq) > (:after_time, :after_seq)
ORDER BY finished_at, seq LIMIT :limit
"""

RETRY_DEAD_IDS = """
UPDATE pulse_jobs
SET status = 'pending', attempts = 0, run_at = :now, started_at = NULL,
    finished_at = NULL
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'dead'
RETURNING id, name
"""
