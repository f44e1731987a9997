-- File size and modification time as last seen, and when the bytes were last hashed:
-- an unchanged stat, older than the hash by a safe margin, means unchanged bytes.
ALTER TABLE file_cache ADD COLUMN size INTEGER NOT NULL DEFAULT 0;
ALTER TABLE file_cache ADD COLUMN mtime_ns INTEGER NOT NULL DEFAULT 0;
ALTER TABLE file_cache ADD COLUMN checked_at_ns INTEGER NOT NULL DEFAULT 0;
