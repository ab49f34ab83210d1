/*
 * The database side of a WSUS upstream sync (upstream/wsus.c speaks the
 * protocol): the selection and what is held go in, the entries come out
 * as a record file the stage reads, and after the diff the categories,
 * the anchor and the upstream revisions held are stored.
 */
#pragma once

#include <libpq-fe.h>

#include "upstream/sync.h"

/*!
 * \brief Fetch from the WSUS upstream into \a dest: the selected products,
 *        classifications and languages, a delta from the stored anchor
 *        when the selection is the one it was made for, only revisions
 *        not held; held entries the upstream still lists are appended
 *        from `updates`. Outside a transaction.
 * \param selection  The selection string upstream_sync_work() compares.
 */
int wsus_sync_fetch(PGconn *conn, upstream_job_t *job, const char *selection, const char *dest)
	__attribute__((warn_unused_result));

/*! \brief In the sync's transaction, before the stage's categories: the
 *         upstream's categories with Microsoft's names and grouping. */
int wsus_sync_categories(PGconn *conn, upstream_job_t *job)
	__attribute__((warn_unused_result));

/*! \brief In the sync's transaction, before COMMIT: the anchor and the
 *         upstream revisions of what `updates` now holds from it. */
int wsus_sync_remember(PGconn *conn, upstream_job_t *job, const char *selection)
	__attribute__((warn_unused_result));
