-- Synchronizations view: what started each sync (manual, scheduled, retry,
-- parent, import) and where it came from (upstream URL, parent, bundle).
ALTER TABLE sync_history ADD COLUMN sync_trigger text NOT NULL DEFAULT '';
ALTER TABLE sync_history ADD COLUMN source text NOT NULL DEFAULT '';
