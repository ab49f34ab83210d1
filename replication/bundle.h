/*
 * Bundles for disconnected sites (DESIGN §6): the pull stream a parent
 * would send, written to a file an operator carries across an air gap.
 *
 *   BundleHeader  format, source site, hierarchy id, from/to, digest, counts
 *   PullStart     \
 *   Batch ...      > exactly what stream_produce() writes
 *   PullDone      /
 *   BundleEnd     SHA-256 of every byte before this frame
 *
 * Everything here runs on a database worker and streams through files in
 * bounded chunks: neither side ever holds a whole bundle in memory.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "replication/apply.h"
#include "catalog/digest.h"

#define SS_BUNDLE_ID_LEN 32        /* hierarchy id: sha256 of the CA certificate */

typedef struct {
	/* Set by the caller. */
	const char *out;               /* destination path (absolute) */
	const char *scratch_dir;       /* where the raw stream is produced first */
	uint64_t since;                /* 0 = full snapshot */
	const char *source_site;
	uint8_t hierarchy_id[SS_BUNDLE_ID_LEN];
	int batch_entries;
	size_t batch_bytes;
	const manifest_keys_t *keys;   /* top site: signs manifests not yet stored */

	/* Results. */
	uint64_t from;                 /* 0 for a snapshot */
	uint64_t to;
	bool full;
	bool fell_back;                /* a delta was asked for, a snapshot written */
	uint64_t upserts;
	uint64_t deletes;
	uint64_t entries;
	digest_t digest;
	uint64_t bytes;                /* size of the bundle file */
	char err[256];
} bundle_export_t;

/* What a bundle's header says, after its checksum was verified. */
typedef struct {
	uint32_t format_version;
	char source_site[8];
	uint8_t hierarchy_id[SS_BUNDLE_ID_LEN];
	uint64_t from;
	uint64_t to;
	digest_t digest;
	uint64_t upserts;
	uint64_t deletes;
	int64_t created_at;
	uint64_t bytes;                /* file size */
} bundle_info_t;

typedef struct {
	/* Set by the caller. */
	const char *path;
	size_t limit;                  /* largest frame accepted */
	int keep_versions;
	uint8_t hierarchy_id[SS_BUNDLE_ID_LEN];
	const manifest_keys_t *keys;   /* manifest signatures to check, if any */

	/* Results. */
	bundle_info_t info;
	apply_t apply;                 /* counts, digest, versions of the apply */
	char err[256];                 /* operator-facing message */
} bundle_import_t;

/*!
 * \brief Export the catalog (all of it, or the changes after e->since) into
 * e->out: produce the stream into e->scratch_dir, then write header, stream
 * and checksum into a temporary file beside e->out, fsync it and rename it
 * into place, so e->out is either absent, the old file, or complete.
 *
 * \return SS_EOK; SS_ENOENT when this site holds no catalog; SS_EINVAL when
 *         e->since is newer than the catalog; SS_EIO, SS_EDB otherwise.
 *         e->err says what happened.
 */
int bundle_export(PGconn *conn, bundle_export_t *e) __attribute__((warn_unused_result));

/*!
 * \brief Check a bundle file without the database: its checksum (streamed,
 * constant memory), then its header.
 *
 * \param path    Bundle file.
 * \param limit   Largest frame accepted.
 * \param info    Output: header fields.
 * \param err     Output: operator-facing message on failure.
 * \param errlen  Size of err.
 * \return SS_EOK; SS_ECHECKSUM (damaged), SS_ETRUNC (cut short), SS_EMALF
 *         (not a bundle), SS_EVERSION (format not understood), negated errno.
 */
int bundle_verify(const char *path, size_t limit, bundle_info_t *info, char *err,
                  size_t errlen) __attribute__((warn_unused_result));

/*!
 * \brief Verify \a im->path (bundle_verify()), check it belongs to this
 * hierarchy, then apply its stream in one transaction (apply_stream()).
 *
 * \return SS_EOK; the bundle_verify() codes; SS_EHIERARCHY; SS_ESEQ (does
 *         not start at the version held, or already applied); SS_EDIGEST;
 *         SS_EDB. im->err holds a message for the operator.
 */
int bundle_import(PGconn *conn, bundle_import_t *im) __attribute__((warn_unused_result));
