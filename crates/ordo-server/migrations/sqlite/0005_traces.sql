-- Async executions: one row per submitted job, from pending to completed or failed,
-- with its dead-letter state when it failed. Times are Unix milliseconds.
CREATE TABLE traces (
    id TEXT PRIMARY KEY,
    tenant_id TEXT NOT NULL,
    ruleset TEXT NOT NULL,
    status TEXT NOT NULL,
    batch INTEGER NOT NULL,
    input TEXT NOT NULL,
    inputs INTEGER NOT NULL,
    result TEXT,
    error TEXT,
    attempts INTEGER NOT NULL,
    dlq TEXT,
    next_retry_at_ms INTEGER,
    instance TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    started_at_ms INTEGER,
    finished_at_ms INTEGER
);
CREATE INDEX traces_status ON traces (status, created_at_ms);
CREATE INDEX traces_dlq ON traces (dlq, next_retry_at_ms);
