/*
 * Single-update import at the top site (DESIGN §2, `sitesync
 * import-update`): take one package by id from a catalog URL or file,
 * even outside the selection, mark it source = imported and commit it as
 * a new catalog version. A later upstream sync never removes it.
 */
#pragma once

#include <libpq-fe.h>

#include "upstream/sync.h"

/*!
 * \brief The whole import, on a database worker.
 *
 * job->url is an http(s):// URL (downloaded into job->state_dir first),
 * a file:// URL or a local path; job->import_id the lower-case update id.
 * The package is inserted (revision 1) or, when its content differs from
 * the stored row, replaced with revision + 1; an identical row commits
 * nothing (job->unchanged, job->version == job->held).
 *
 * \param arg  The upstream_job_t.
 * \return SS_EOK with job->revision, job->version, job->digest and
 *         job->entries set; SS_ENOENT when the catalog lacks the id;
 *         SS_EFETCH, SS_EXML, SS_ECAB... with job->err set.
 */
int upstream_import_work(PGconn *conn, void *arg);
