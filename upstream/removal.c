/* Upstream syncs: stop a removal larger than the configured share. */
#include "upstream/removal.h"

#include <inttypes.h>
#include <stdio.h>

#include "common/errcode.h"

int upstream_removal_check(upstream_job_t *job, uint64_t held_entries)
{
	/* Purges are maintenance the operator configured, not a surprise. */
	uint64_t removed = job->removed > job->purged ? job->removed - job->purged : 0;
	if (job->allow_removal || removed == 0 || held_entries == 0 ||
	    job->max_removal_percent >= 100)
		return SS_EOK;
	if (removed * 100 <= (uint64_t)job->max_removal_percent * held_entries)
		return SS_EOK;
	snprintf(job->err, sizeof(job->err), "this sync would remove %" PRIu64 " of %" PRIu64
	         " entries (%" PRIu64 "%%), more than [upstream] max_removal_percent = %d; "
	         "nothing was changed. Check the selection (products, classifications, languages "
	         "list), or confirm with: sitesync sync --allow-removal", removed, held_entries,
	         removed * 100 / held_entries, job->max_removal_percent);
	job->removal_refused = true;
	return SS_EDENIED;
}
