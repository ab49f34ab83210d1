/*
 * Staging a catalog for a sync: every package's queryable columns, split
 * offsets and hash into the temporary table ss_up, and (a first sync,
 * first.h) selected packages straight into updates.
 *
 * A catalog file is parsed on the calling thread while a second thread
 * hashes the packages, builds the COPY rows and sends them: libxml2 and
 * PostgreSQL's COPY each get a core instead of taking turns.
 */
#pragma once

#include <libpq-fe.h>

#include "upstream/first.h"
#include "upstream/sync.h"

/*!
 * \brief Stage the catalog (or sitesync:// snapshot) at \a path; with
 *        \a first its selected packages also go to updates.
 * \return SS_EOK, or an error with job->err set; the caller rolls back.
 */
int upstream_stage_catalog(PGconn *conn, upstream_job_t *job, const char *path,
                           first_sync_t *first)
	__attribute__((warn_unused_result));
