-- The commit log: one immutable row per change, gapless seq.
CREATE TABLE commits (
    seq           BIGINT PRIMARY KEY CHECK (seq > 0),
    id            TEXT   NOT NULL UNIQUE,
    created_at_ms BIGINT NOT NULL,
    source        TEXT   NOT NULL,
    kind          TEXT   NOT NULL,
    tenant_id     TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    version       TEXT,
    content       TEXT,
    hash          TEXT
);
CREATE INDEX commits_by_name ON commits (tenant_id, name, seq);

-- Current state, maintained in the same transaction as each commit.
CREATE TABLE rulesets (
    tenant_id TEXT   NOT NULL,
    name      TEXT   NOT NULL,
    seq       BIGINT NOT NULL,
    version   TEXT   NOT NULL,
    content   TEXT   NOT NULL,
    hash      TEXT   NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE tenants (
    id      TEXT   PRIMARY KEY,
    seq     BIGINT NOT NULL,
    content TEXT   NOT NULL
);

-- What was last read of each file of the writer's rules directory, so that a restart
-- skips unchanged files. A cache: losing it only costs time.
CREATE TABLE file_cache (
    tenant_id     TEXT   NOT NULL,
    name          TEXT   NOT NULL,
    raw_hash      TEXT   NOT NULL,
    content_hash  TEXT   NOT NULL,
    size          BIGINT NOT NULL,
    mtime_ns      BIGINT NOT NULL,
    checked_at_ns BIGINT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
