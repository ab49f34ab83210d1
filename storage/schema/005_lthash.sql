-- sitesync schema, version 5: the LtHash set digest (DESIGN §1, protocol 3).
-- lthash: the 2048-byte LtHash16 state of the visible catalog (1024 lanes,
-- little-endian u16), which incremental updates add to and subtract from.
-- set_digest: SHA-256 of that state at each version, what manifests sign.
-- SQL cannot expand SHAKE128, so both start NULL and the daemon fills them
-- at start from the stored entry hashes (state_lthash_upgrade()) before it
-- serves or applies anything; `digest` stays the protocol-2 sum.
ALTER TABLE catalog_state ADD COLUMN lthash bytea;
ALTER TABLE catalog_versions ADD COLUMN set_digest bytea;
