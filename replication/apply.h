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

#include "catalog/digest.h"
#include "catalog/manifest.h"
#include "catalog/state.h"

typedef struct {
	/* Set by the caller. */
	const char *path;          /* stream file */
	size_t limit;              /* largest frame accepted */
	int keep_versions;         /* change-log versions to keep */
	bool bundle;               /* BundleHeader first, BundleEnd last */
	bool allow_same;           /* a full snapshot may re-apply the held version */
	/* Set: the stream is still arriving; read whole frames as they are
	 * published (catalog/feed.h), wait at most feed_wait s for the next. */
	struct stream_feed *feed;
	int feed_wait;
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
	digest_t digest;           /* both forms, after the apply */
	uint8_t set_digest[SS_DIGEST_LEN]; /* SHA-256 of digest's LtHash state */
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
 * version held, or already applied), SS_EDIGEST, SS_EVERSION (no set
 * digest: made by a protocol-2 site), SS_ETRUNC, SS_EMALF,
 * SS_EDB; a->err says what happened.
 */
int apply_stream(PGconn *conn, apply_t *a) __attribute__((warn_unused_result));
