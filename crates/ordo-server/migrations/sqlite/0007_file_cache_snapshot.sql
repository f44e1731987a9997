-- The file cache as one value, one line per file (tenant, name, raw hash, content
-- hash, size, mtime, checked at; tab-separated). It is read whole at every start and
-- written whole after every import: one value is read in a few microseconds, a row
-- per file took SQLite about 2 ms per thousand files to put together.
CREATE TABLE file_cache_snapshot (
    id   INTEGER PRIMARY KEY CHECK (id = 1),
    data TEXT    NOT NULL
);
INSERT INTO file_cache_snapshot (id, data)
SELECT 1, group_concat(tenant_id || char(9) || name || char(9) || raw_hash || char(9)
                       || content_hash || char(9) || size || char(9) || mtime_ns
                       || char(9) || checked_at_ns, char(10))
FROM file_cache
HAVING count(*) > 0;
DROP TABLE file_cache;
