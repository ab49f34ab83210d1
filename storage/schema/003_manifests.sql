-- Signed manifests (DESIGN §8): kept with each version so a site relays
-- exactly what the top signed.
ALTER TABLE catalog_versions ADD COLUMN manifest bytea;
ALTER TABLE catalog_versions ADD COLUMN signature bytea;
