/*
 * The top site's sync from its upstream catalog (DESIGN §2): fetch (or
 * read a file), stream-parse every package into a staging table with
 * COPY, record the categories seen, apply the product / classification /
 * language selection, diff against the current catalog and, when anything
 * changed, commit catalog version V+1 with its change rows and digest —
 * all in one transaction. Runs on a database worker.
 */
#pragma once

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "replication/digest.h"

typedef struct upstream_job {
	/* Set by the caller (owned strings, freed by upstream_job_free()). */
	char *url;
	char *ca_file;
	char *proxy;
	long connect_timeout;
	long timeout;
	char *state_dir;
	bool full;                 /* ignore "not modified" */
	int keep_versions;
	void *owner;               /* the caller's; the job never touches it */

	/* Progress, read by the event loop. */
	atomic_uint_fast64_t parsed;
	atomic_int phase;          /* 0 fetch, 1 parse, 2 write */

	/* Results. */
	bool not_modified;         /* upstream said 304: nothing parsed */
	bool unchanged;            /* parsed, but nothing differs */
	uint64_t fetched_bytes;
	uint64_t entries_seen;     /* packages in the catalog */
	uint64_t selected;         /* packages passing the selection */
	uint64_t held;             /* version before */
	uint64_t version;          /* version after (== held when unchanged) */
	digest_t digest;
	uint64_t entries;
	uint64_t added, changed, removed, expired;
	char err[256];
} upstream_job_t;

/*! \brief Free a job and its strings (accepts NULL). */
void upstream_job_free(upstream_job_t *job);

/*! \brief The whole sync; returns SS_EOK or an error with job->err set. */
int upstream_sync_work(PGconn *conn, void *arg);

/*!
 * \brief Local path of a file:// URL (percent-decoding not needed for
 * ordinary paths); NULL for other schemes.
 */
const char *upstream_file_path(const char *url);
