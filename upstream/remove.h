/*
 * Removing an update imported by hand (import-update) from the top site's
 * catalog: a new version that deletes it, like a sync's removal.
 */
#pragma once

#include <libpq-fe.h>

/*!
 * \brief Database worker job: delete job->import_id, which must be stored
 * with source "imported", and commit version held + 1 with it as the one
 * removal. Refuses (SS_ENOENT) an id not in the catalog and (SS_EDENIED)
 * an update that came from upstream, changing nothing.
 * \param arg  upstream_job_t with import_id and keep_versions set.
 */
int upstream_remove_work(PGconn *conn, void *arg);
