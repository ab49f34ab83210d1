-- Several sources ([source NAME], issue 18): which source brought each
-- entry of the top's catalog, so a sync can say whose entries it added,
-- changed and removed (an entry that leaves every source is counted
-- against the one that brought it). Kept only while [source] sections
-- are configured; emptied when the [upstream] catalog is alone again.
CREATE TABLE update_sources (
    update_id   uuid PRIMARY KEY,
    source      text NOT NULL      -- 'upstream' or the [source NAME]
);

-- The per-source counts of each sync, as `history` shows them:
-- "upstream: 3 added, 0 changed, 0 removed; dell: ...", '' with one source.
ALTER TABLE sync_history ADD COLUMN by_source text NOT NULL DEFAULT '';
