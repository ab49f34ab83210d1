/*
 * Supersedence expiry and purge at the top site (DESIGN §2), run by the
 * upstream sync inside its transaction, between the selection and the
 * diff. Expiry lives inside the packed UpdateContent, so an entry whose
 * expired flag (or imported source) must change is unpacked, amended and
 * re-packed in the stage: the diff then sees it as changed and it gets a
 * new revision like any other change.
 */
#pragma once

#include <libpq-fe.h>

#include "upstream/sync.h"

/*!
 * \brief Settle expiry and purge on the temporary table ss_sel.
 *
 * Settings (table `settings`): 'supersede_expire_months' (default 0 =
 * expire at once, -1 = never) and 'purge_expired_days' (default 0 =
 * never purge). An entry of ss_sel whose id is in the supersedes list of
 * another ss_sel entry released at least N months ago becomes expired.
 * Entries that stay in ss_sel but are imported keep source = imported.
 * Entries expired (as first seen by this site) longer than the purge
 * setting leave ss_sel, so the diff removes them and they stay out while
 * they remain expired upstream.
 *
 * \param job  Output: job->expired (newly expired), job->purged.
 * \return SS_EOK, or an error with job->err set.
 */
int upstream_expire_settle(PGconn *conn, upstream_job_t *job)
	__attribute__((warn_unused_result));
