/*
 * Upstream syncs at the top site: started by the schedule, by
 * `sitesync sync`, or by the retry timer after a failure; one at a time.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>

struct daemon;

/*!
 * \brief Start an upstream sync now, or queue one if a sync is running.
 * \return SS_EOK, SS_ENOTTOP on a site with a parent.
 */
int topsync_start(struct daemon *d, bool full, const char *trigger);

/*!
 * \brief As topsync_start(); \a allow_removal lets this one sync remove more
 * than [upstream] max_removal_percent of the catalog (`sync --allow-removal`).
 */
int topsync_start_confirmed(struct daemon *d, bool full, bool allow_removal,
                            const char *trigger);

/*! \brief Create the retry timer and check the cron expression. */
int topsync_schedule_init(struct daemon *d, char *err, size_t errlen);

/*! \brief Arm the cron schedule (active writer only); runs a missed run now. */
int topsync_schedule_arm(struct daemon *d, char *err, size_t errlen);

/*!
 * \brief After a reload: drop the armed schedule and arm the configured one
 * (top site, active writer); no catch-up run, the old schedule had its say.
 */
int topsync_schedule_rearm(struct daemon *d, char *err, size_t errlen);

/*! \brief Items parsed by the running sync (progress). */
bool topsync_running(const struct daemon *d);

void topsync_free(struct daemon *d);
