-- sitesync schema, version 1 (DESIGN §1, §4, §7).
-- Migrations run in order at daemon start, each in its own transaction.

-- One current revision per update. Queryable columns are extracted from
-- `content` (the packed UpdateContent, relayed verbatim between sites);
-- entry_hash = sha256(be32(revision) || content) feeds the catalog digest.
CREATE TABLE updates (
    update_id      uuid PRIMARY KEY,
    revision       integer NOT NULL,
    title          text NOT NULL DEFAULT '',
    vendor         text NOT NULL DEFAULT '',
    products       text[] NOT NULL DEFAULT '{}',
    classification text NOT NULL DEFAULT '',
    languages      text[] NOT NULL DEFAULT '{}',
    severity       text NOT NULL DEFAULT '',
    kb_article     text NOT NULL DEFAULT '',
    release_date   text NOT NULL DEFAULT '',
    expired        boolean NOT NULL DEFAULT false,
    source         text NOT NULL DEFAULT 'upstream',
    supersedes     text[] NOT NULL DEFAULT '{}',
    entry_hash     bytea NOT NULL,
    content        bytea NOT NULL
);

-- Every catalog version this site has held, with its digest.
CREATE TABLE catalog_versions (
    version     bigint PRIMARY KEY,
    digest      bytea NOT NULL,
    entries     bigint NOT NULL,
    added       integer NOT NULL DEFAULT 0,
    changed     integer NOT NULL DEFAULT 0,
    removed     integer NOT NULL DEFAULT 0,
    expired     integer NOT NULL DEFAULT 0,
    full_pull   boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Which update ids each version touched (upsert or delete: the current
-- row, or its absence, says which). Compacted to keep_versions.
CREATE TABLE changes (
    version    bigint NOT NULL,
    update_id  uuid NOT NULL,
    PRIMARY KEY (version, update_id)
);

-- The version this site's visible catalog is at. change_floor: deltas are
-- served only to children holding a version >= change_floor.
CREATE TABLE catalog_state (
    id            integer PRIMARY KEY CHECK (id = 1),
    version       bigint NOT NULL,
    digest        bytea NOT NULL,
    entries       bigint NOT NULL,
    change_floor  bigint NOT NULL,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
INSERT INTO catalog_state VALUES (1, 0, '\x0000000000000000000000000000000000000000000000000000000000000000', 0, 0, now());
INSERT INTO catalog_versions (version, digest, entries)
    VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000', 0);

-- Products, classifications, vendors and languages seen upstream, selected
-- or not. A kind with nothing selected is not filtered.
CREATE TABLE categories (
    kind        text NOT NULL CHECK (kind IN ('product', 'classification', 'vendor', 'language')),
    id          text NOT NULL,
    title       text NOT NULL DEFAULT '',
    parent_id   text,
    selected    boolean NOT NULL DEFAULT false,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);

-- Child sites allowed to connect.
CREATE TABLE children (
    site         text PRIMARY KEY CHECK (site ~ '^[A-Z0-9]{3}$'),
    approved_at  timestamptz NOT NULL DEFAULT now()
);

-- Latest status row of every site in the subtree (this site included),
-- as JSON in the DESIGN §9 shape. `via` is the child that reported it.
CREATE TABLE site_status (
    site        text PRIMARY KEY,
    via         text,
    row         jsonb NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Status messages with stable ids (6701 sync started, ... see README).
CREATE TABLE status_messages (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    site        text NOT NULL,
    msg_id      integer NOT NULL,
    severity    text NOT NULL,
    text        text NOT NULL
);
CREATE INDEX status_messages_at ON status_messages (at);

-- One row per sync attempt at this site.
CREATE TABLE sync_history (
    id          bigserial PRIMARY KEY,
    kind        text NOT NULL,          -- upstream | pull | import
    started_at  timestamptz NOT NULL,
    ended_at    timestamptz,
    result      text NOT NULL,          -- running | succeeded | failed | unchanged
    from_version bigint,
    to_version  bigint,
    added       integer NOT NULL DEFAULT 0,
    changed     integer NOT NULL DEFAULT 0,
    removed     integer NOT NULL DEFAULT 0,
    expired     integer NOT NULL DEFAULT 0,
    error_code  integer NOT NULL DEFAULT 0,
    error       text
);

-- Key/value settings changed at run time (ETag of the upstream, ...).
CREATE TABLE settings (
    key    text PRIMARY KEY,
    value  text NOT NULL
);
