-- sitesync schema, version 2: the purge clock of expired updates (top site).
-- An id gets a row when the upstream sync first finds it expired and loses
-- it when it is no longer expired (or no longer selected); updates expired
-- longer than the 'purge_expired_days' setting are purged from the catalog.
CREATE TABLE update_expiry (
    update_id   uuid PRIMARY KEY,
    expired_at  timestamptz NOT NULL DEFAULT now()
);
