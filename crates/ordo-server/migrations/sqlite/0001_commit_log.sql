-- The commit log: one immutable row per change, gapless seq.
CREATE TABLE commits (
    seq           INTEGER PRIMARY KEY,
    id            TEXT    NOT NULL UNIQUE,
    created_at_ms INTEGER NOT NULL,
    source        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    tenant_id     TEXT    NOT NULL,
    name          TEXT    NOT NULL,
    version       TEXT,
    content       TEXT,
    hash          TEXT
);
CREATE INDEX commits_by_name ON commits (tenant_id, name, seq);

-- Current state, maintained in the same transaction as each commit.
CREATE TABLE rulesets (
    tenant_id TEXT    NOT NULL,
    name      TEXT    NOT NULL,
    seq       INTEGER NOT NULL,
    version   TEXT    NOT NULL,
    content   TEXT    NOT NULL,
    hash      TEXT    NOT NULL,
    PRIMARY KEY (tenant_id, name)
);

CREATE TABLE tenants (
    id      TEXT    PRIMARY KEY,
    seq     INTEGER NOT NULL,
    content TEXT    NOT NULL
);
