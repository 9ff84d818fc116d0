-- Written once for SQLite and PostgreSQL: BIGINT, TEXT and partial indexes
-- mean the same in both. Times are microseconds since the Unix epoch (UTC).
CREATE TABLE runs (
    id TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    partition_key TEXT NOT NULL,
    level BIGINT NOT NULL,
    state TEXT NOT NULL,
    reason TEXT NOT NULL,
    backfill_id TEXT,
    if_stale BIGINT NOT NULL DEFAULT 0,
    attempts BIGINT NOT NULL DEFAULT 0,
    max_attempts BIGINT NOT NULL,
    not_before BIGINT NOT NULL,
    enqueued_at BIGINT NOT NULL,
    started_at BIGINT,
    finished_at BIGINT,
    lease_until BIGINT,
    worker TEXT,
    rows_written BIGINT,
    error TEXT
);

-- At most one queued or running run per partition: enqueueing is idempotent.
CREATE UNIQUE INDEX runs_one_pending ON runs (model, partition_key)
    WHERE state IN ('queued', 'running');
CREATE INDEX runs_by_state ON runs (state, not_before);
CREATE INDEX runs_by_partition ON runs (model, partition_key, enqueued_at);
CREATE INDEX runs_by_backfill ON runs (backfill_id);

CREATE TABLE backfills (
    id TEXT PRIMARY KEY,
    target TEXT NOT NULL,
    from_date TEXT NOT NULL,
    to_date TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    finished_at BIGINT
);

-- The last fire time of each schedule, claimed by compare-and-set so that
-- several schedulers fire it once.
CREATE TABLE schedules (
    name TEXT PRIMARY KEY,
    last_fire BIGINT NOT NULL
);

CREATE TABLE workers (
    id TEXT PRIMARY KEY,
    host TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    heartbeat_at BIGINT NOT NULL
);
