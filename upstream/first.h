/*
 * First sync into an empty catalog: every selected package is an added
 * entry, so its row goes straight into `updates` while the catalog is
 * parsed (one write, as the pull path does for a first snapshot) instead
 * of through the stage and a second INSERT. The stage still gets every
 * package's queryable columns and split offsets, without content, from a
 * scratch file after the parse: categories, selection, expiry and purge
 * are settled in SQL exactly as for any sync, then the rows written are
 * checked against that verdict and amended in place (expiry flags) or
 * deleted (purged).
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/sitesync.pb-c.h"
#include "storage/copy.h"
#include "upstream/idset.h"
#include "upstream/sync.h"

/* The selection as SQL_SELECT applies it: sorted ids per kind. */
enum { FIRST_PRODUCT, FIRST_CLASSIFICATION, FIRST_LANGUAGE, FIRST_KINDS };

typedef struct {
	char **sel[FIRST_KINDS];
	size_t nsel[FIRST_KINDS];
	idset_t ids;          /* ids written to updates: of duplicates the first selected wins */
	FILE *meta;           /* stage rows, COPY binary, loaded after the parse */
	copybuf_t meta_cb;
	uint64_t written;     /* rows written to updates */
	/* The expiry rule (expire.c), so that a supersedence seen while the
	 * packages involved are still unwritten is applied before writing. */
	long expire_months;   /* clamped as expire.c clamps it; < 0: never */
	char expire_cutoff[16]; /* months > 0: released on or before this date */
} first_sync_t;

/*!
 * \brief Decide whether this sync may write straight into updates (an
 *        empty catalog, not an import) and if so prepare: the selection
 *        and a scratch file in job->state_dir.
 * \param months  The supersede_expire_months setting, as the sync read it.
 * \param use  Output: true when \a f is ready; first_sync_end() either way.
 */
int first_sync_begin(first_sync_t *f, PGconn *conn, upstream_job_t *job, long months, bool *use)
	__attribute__((warn_unused_result));

/*! \brief True when SQL_SELECT would pick \a u (ignoring duplicates). */
bool first_sync_selected(const first_sync_t *f, const Sitesync__UpdateContent *u);

/*! \brief True when the supersedes list of \a o (a selected package)
 *         expires what it names, by the expiry rule in force. */
bool first_sync_supersedes(const first_sync_t *f, const Sitesync__UpdateContent *o);

/*! \brief Write buffered stage rows to the scratch file when over \a threshold. */
int first_sync_meta_flush(first_sync_t *f, size_t threshold, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief After the parse: COPY the scratch file into the stage with \a copy_sql. */
int first_sync_load_stage(first_sync_t *f, PGconn *conn, const char *copy_sql,
                          char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief After selection and expiry are settled (ss_pick, ss_sel): check
 *        the rows written, amend and purge them, record the version.
 * \return SS_EOK; SS_EAGAIN when the rows written are not what the SQL
 *         selection picked (the caller rolls back and stages instead).
 */
int first_sync_commit(PGconn *conn, upstream_job_t *job, first_sync_t *f)
	__attribute__((warn_unused_result));

void first_sync_end(first_sync_t *f);
