-- With each commit, the last seq whose rules file was written when it was made: at a
-- start, the files of later commits are in doubt (a crash may have come between the
-- commit and its file) and are written again from the log. NULL: nothing in doubt.
ALTER TABLE commits ADD COLUMN files_done BIGINT;
