-- The current state keeps no copy of a ruleset's content: the commit that put it
-- (`rulesets.seq`) holds it, and contents are read from there. Without the contents a
-- row is as small as the index that spared a start from reading past them, which goes.
DROP INDEX rulesets_info;
ALTER TABLE rulesets DROP COLUMN content;
