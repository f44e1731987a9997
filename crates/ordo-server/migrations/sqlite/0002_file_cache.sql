-- Which file content (by SHA-256 of its bytes) was last read for a ruleset, and the
-- canonical content hash it parsed to. Lets a restart skip parsing unchanged files.
-- A cache: losing it only costs time.
CREATE TABLE file_cache (
    tenant_id    TEXT NOT NULL,
    name         TEXT NOT NULL,
    raw_hash     TEXT NOT NULL,
    content_hash TEXT NOT NULL,
    PRIMARY KEY (tenant_id, name)
);
