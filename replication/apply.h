/*
 * Apply a stored pull stream (or the stream inside an import bundle) to
 * the site database in ONE transaction: stage the batches with COPY, merge
 * them, recompute the digest incrementally and compare it with the
 * sender's. On any mismatch or error the transaction rolls back, so the
 * visible catalog is at the old version or the new one, never between.
 */
#pragma once

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "replication/digest.h"
#include "replication/manifest.h"

typedef struct {
	/* Set by the caller. */
	const char *path;          /* stream file */
	size_t limit;              /* largest frame accepted */
	int keep_versions;         /* change-log versions to keep */
	bool bundle;               /* BundleHeader first, BundleEnd last */
	bool allow_same;           /* a full snapshot may re-apply the held version */
	/* Trusted keys, an owned snapshot (manifest_keys_copy()): the loop may
	 * trust a rotated key while this runs on a worker. None = not checked. */
	manifest_keys_t keys;

	/* Progress, read by the event loop while the job runs. */
	atomic_uint_fast64_t items_done;
	atomic_uint_fast64_t items_total;

	/* Results. */
	uint64_t from;
	uint64_t to;
	uint64_t held;             /* version held before */
	bool full;
	uint64_t added, changed, removed, expired;
	uint64_t upserts, deletes;
	uint64_t entries;
	digest_t digest;
	uint8_t *manifest;         /* as received, stored for relaying (owned) */
	size_t manifest_len;
	uint8_t *signature;
	size_t signature_len;
	bool key_announced;        /* the manifest announced a new trusted key */
	uint8_t next_key[32];      /* ... this one */
	char err[256];
} apply_t;

/*! \brief Free what apply_stream() allocated in \a a and its key snapshot (not \a a itself). */
void apply_clear(apply_t *a);

/*!
 * \brief Apply \a a->path. Returns SS_EOK, SS_ESEQ (does not start at the
 * version held, or already applied), SS_EDIGEST, SS_ETRUNC, SS_EMALF,
 * SS_EDB; a->err says what happened.
 */
int apply_stream(PGconn *conn, apply_t *a) __attribute__((warn_unused_result));

/*!
 * \brief Record a new version in catalog_state / catalog_versions and
 * compact the change log, inside the caller's transaction. Shared with the
 * top site's upstream sync.
 */
int apply_commit_version(PGconn *conn, uint64_t version, const digest_t *digest,
                         uint64_t entries, uint64_t added, uint64_t changed,
                         uint64_t removed, uint64_t expired, bool full,
                         int keep_versions, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Add to \a d the entry hash in the first column of every row of
 * \a sql (the digest arithmetic both applies and upstream syncs need).
 */
int apply_sum_hashes(PGconn *conn, const char *sql, digest_t *d, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief Read catalog_state (version, digest, entries), optionally FOR UPDATE. */
int apply_read_state(PGconn *conn, bool lock, uint64_t *version, digest_t *digest,
                     uint64_t *entries, char *err, size_t errlen)
	__attribute__((warn_unused_result));
