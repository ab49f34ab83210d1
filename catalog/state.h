/*
 * Catalog state (catalog_state, catalog_versions, the change log's floor):
 * read the version a site holds, record a new one, and sum entry hashes
 * into a digest. The applies (replication/) and the top site's upstream
 * syncs (upstream/) commit versions through here.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/digest.h"

/*!
 * \brief Record a new version in catalog_state / catalog_versions and
 * compact the change log, inside the caller's transaction. Shared by the
 * applies and the top site's upstream sync.
 */
int state_commit_version(PGconn *conn, uint64_t version, const digest_t *digest,
                         uint64_t entries, uint64_t added, uint64_t changed,
                         uint64_t removed, uint64_t expired, bool full,
                         int keep_versions, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Add to \a d the entry hash in the first column of every row of
 * \a sql (the digest arithmetic both applies and upstream syncs need).
 */
int state_sum_hashes(PGconn *conn, const char *sql, digest_t *d, char *err, size_t errlen)
	__attribute__((warn_unused_result));

typedef struct {
	bool computed;             /* the set hash was missing and is now computed */
	bool sum_mismatch;         /* ... and the rows do not give the stored sum */
	bool bumped;               /* ... and the top recorded version + 1 */
	uint64_t version;          /* version held when it was computed */
	digest_t stored;           /* the stored sum and the computed state */
} state_upgrade_t;

/*!
 * \brief Migration 005's data step, run at every start (cheap when done):
 * when catalog_state has no LtHash state, compute it from the stored entry
 * hashes, store it and the current version's set digest; at the top site
 * (\a top) also record a no-change version + 1, whose manifest will carry
 * the set digest. One transaction.
 * \param u  Output: what was done.
 */
int state_lthash_upgrade(PGconn *conn, bool top, int keep_versions, state_upgrade_t *u,
                         char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief Read catalog_state (version, digest, entries), optionally FOR UPDATE. */
int state_read(PGconn *conn, bool lock, uint64_t *version, digest_t *digest,
               uint64_t *entries, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Add to \a d the entry hash in column \a col of every row of \a r;
 * rows with NULL there are skipped when \a skip_null.
 */
int state_sum_hash_column(PGresult *r, int col, bool skip_null, digest_t *d,
                          char *err, size_t errlen)
	__attribute__((warn_unused_result));
