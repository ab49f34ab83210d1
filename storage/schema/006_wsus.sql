-- WSUS upstreams ([MS-WSUSSS]): the upstream RevisionNumber of each update
-- the top holds from one, so the next sync asks GetUpdateData only for
-- revisions it does not hold. Rewritten by every WSUS sync that commits;
-- the anchor of the last update list is in settings (wsus_anchor).
CREATE TABLE wsus_revisions (
    update_id   uuid PRIMARY KEY,
    revision    integer NOT NULL,
    bundled     text NOT NULL DEFAULT ''   -- its bundle members, comma-separated:
                                           -- kept with it when it is not fetched again
);

-- Every category document seen upstream (companies, product families,
-- products, classifications, detectoids) at its revision, so a sync
-- fetches only the category documents that changed.
CREATE TABLE wsus_categories (
    id          uuid PRIMARY KEY,
    revision    integer NOT NULL,
    type        text NOT NULL,
    title       text NOT NULL,
    parent      text NOT NULL DEFAULT ''
);
