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

#include "catalog/digest.h"
#include "upstream/wsus.h"

/* A further catalog merged into the sync ([source NAME]). */
typedef struct {
	char *name, *url, *ca_file, *proxy;   /* owned */
	/* Its own selection, comma-separated ids (owned; NULL: the site's). */
	char *products, *classifications, *languages;
	char path[1024];           /* where its catalog was read from */
	uint64_t entries;          /* packages it brought to the stage */
	uint64_t bytes;
	uint64_t seq_lo, seq_hi;   /* its packages' seq in the stage: [lo, hi) */
} upstream_source_t;

#define UPSTREAM_MAX_SOURCES 16

typedef struct upstream_job {
	/* Set by the caller (owned strings, freed by upstream_job_free()). */
	char *url;
	char *ca_file;
	char *proxy;
	long connect_timeout;
	long timeout;
	uint64_t max_bytes;        /* [upstream] max_catalog_bytes: download and cabinet */
	char *state_dir;
	char *cert_file;           /* sitesync:// upstreams: our certificate there */
	char *key_file;
	int heartbeat;             /* sitesync:// upstreams: Ping interval */
	size_t max_frame;
	size_t max_entry_bytes;     /* larger entries refuse the whole catalog */
	bool full;                 /* ignore "not modified" */
	bool staged_only;          /* never write a first sync straight into updates */
	int keep_versions;
	int max_removal_percent;   /* removal guard (removal.h); 100 = off */
	bool allow_removal;        /* the operator confirmed a large removal */
	void *owner;               /* the caller's; the job never touches it */
	char *import_id;           /* set: import this one update (import.c) */
	bool wsus;                 /* url is a WSUS server / Microsoft Update ([MS-WSUSSS]) */
	size_t max_document;       /* WSUS: one update document, bytes (0 = default) */
	upstream_source_t sources[UPSTREAM_MAX_SOURCES]; /* after the url's catalog */
	size_t n_sources;
	uint64_t primary_entries;  /* packages the url itself brought (seq 0 onwards) */

	/* Progress, read by the event loop. */
	atomic_uint_fast64_t parsed;
	atomic_int phase;          /* 0 fetch, 1 parse, 2 write */

	/* Results. */
	bool not_modified;         /* upstream said 304 (or same_bytes): nothing parsed */
	bool same_bytes;           /* the catalog's bytes are those of the last sync */
	bool unchanged;            /* parsed, but nothing differs */
	bool first_direct;         /* a first sync written straight into updates (first.h) */
	bool removal_refused;      /* stopped by the removal guard (removal.h) */
	char first_refused[256];   /* why that was rolled back and staged instead */
	uint64_t fetched_bytes;
	uint64_t entries_seen;     /* packages in the catalog */
	uint64_t selected;         /* packages passing the selection */
	uint64_t held;             /* version before */
	uint64_t version;          /* version after (== held when unchanged) */
	digest_t digest;
	uint64_t entries;
	/*
	 * added + changed + removed is every row the version touched. expired
	 * counts entries that became expired in this version; each of them is
	 * also in added or changed (its content changed). purged counts
	 * expired entries dropped by maintenance; each is also in removed.
	 */
	uint64_t added, changed, removed, expired, purged;
	uint32_t revision;         /* import: the update's revision after it */
	wsus_result_t wsus_res;    /* WSUS upstreams: categories, counts, notes, anchor */
	/* With [source] sections: the counts per source, "upstream: 3 added,
	 * 0 changed, 0 removed; dell: ..." (sources.h); '' otherwise. */
	char by_source[1024];
	char err[256];
} upstream_job_t;

/*! \brief Free a job and its strings (accepts NULL). */
void upstream_job_free(upstream_job_t *job);

/*! \brief The whole sync; returns SS_EOK or an error with job->err set. */
int upstream_sync_work(PGconn *conn, void *arg);

/*!
 * \brief Stage a parsed catalog into the temporary table ss_up (one row
 * per package in catalog order, numbered by seq: the queryable columns of
 * `updates`, the packed content and where its expired and source fields
 * sit, dropped at commit). With job->import_id only that package is
 * staged, marked source = imported. Call inside a transaction.
 *
 * \param path  Catalog file (XML, .sdp or .cab).
 * \return SS_EOK, or an error with job->err set.
 */
int upstream_stage(PGconn *conn, upstream_job_t *job, const char *path)
	__attribute__((warn_unused_result));

/*!
 * \brief Diff the temporary table ss_sel (the wanted entries: update_id,
 * seq of their ss_up row, expired, source, fix as built by
 * upstream_expire_settle()) against `updates` and, if anything differs,
 * commit version held + 1: rows, change rows, digest, catalog_state.
 * Fills the counts, version, digest and entries of job (job->unchanged
 * when nothing differs).
 *
 * \param removals  Remove upstream-sourced rows absent from ss_sel (an
 *                  upstream sync); false for an import, which only adds.
 * \param held_digest, held_entries  catalog_state read FOR UPDATE.
 */
int upstream_diff_commit(PGconn *conn, upstream_job_t *job, bool removals,
                         const digest_t *held_digest, uint64_t held_entries)
	__attribute__((warn_unused_result));

/*! \brief Read an integer from the settings table; \a def when absent. */
int upstream_setting_int(PGconn *conn, const char *key, long def, long *out,
                         char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Local path of a file:// URL (percent-decoding not needed for
 * ordinary paths); NULL for other schemes.
 */
const char *upstream_file_path(const char *url);
