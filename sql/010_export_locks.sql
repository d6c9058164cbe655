-- Exports that never hold the application (issue 14): the table comment a reload marker replaced
-- is put back only after every export worker has ended its transaction, under a lock_timeout,
-- and retried until it succeeds; which operations still owe their table its comment.
ALTER TABLE cdc_registry.reloads ADD COLUMN comment_pending boolean NOT NULL DEFAULT false;
