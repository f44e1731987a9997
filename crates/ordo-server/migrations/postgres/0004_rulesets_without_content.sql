-- The current state keeps no copy of a ruleset's content: the commit that put it
-- (`rulesets.seq`) holds it, and contents are read from there.
ALTER TABLE rulesets DROP COLUMN content;
