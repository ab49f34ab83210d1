/*
 * The removal guard of upstream syncs: a sync that would remove more than
 * [upstream] max_removal_percent of the catalog stops, unless the operator
 * confirmed it (`sitesync sync --allow-removal`). A selection typo (an
 * unknown product, the wrong case) otherwise empties every site.
 */
#pragma once

#include <stdint.h>

#include "upstream/sync.h"

/*!
 * \brief Check the diff of \a job (its removed count, purges excluded)
 * against the share allowed of \a held_entries.
 * \return SS_EOK, or SS_EDENIED with job->err saying what would go and
 *         how to confirm.
 */
int upstream_removal_check(upstream_job_t *job, uint64_t held_entries)
	__attribute__((warn_unused_result));
