-- Every field of the current rulesets but their content, in one index: a start reads
-- them from it alone, without the pages holding the contents (which come before the
-- hash in the table, so that even the hash is only reached through them), and reads
-- the contents after it is ready.
CREATE INDEX rulesets_info ON rulesets (tenant_id, name, seq, hash, version);
