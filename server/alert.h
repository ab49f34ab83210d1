/*
 * Alerts: run the configured command ([alerts] command) when a site in the
 * subtree turns "failed" or "stale", and again when it recovers (DESIGN §4).
 *
 * A one-second timer renders status_json(), compares every site's state with
 * the one it saw last, and starts `/bin/sh -c COMMAND` through posix_spawn
 * with SITESYNC_* variables describing the change. Children are reaped from
 * the same timer (waitpid WNOHANG), so the loop never waits on a command.
 */
#pragma once

struct daemon;

/* At most this many alert commands run at once; more are dropped (logged). */
#define SS_ALERT_MAX_RUNNING 4

/*!
 * \brief Start watching: a persistent 1 s timer on d->site.base.
 * \return SS_EOK, or SS_ENOMEM when the timer cannot be created.
 */
int alert_init(struct daemon *d);

/*!
 * \brief Stop the timer, reap finished commands and free the state.
 * Commands still running are left to finish on their own (logged).
 */
void alert_free(struct daemon *d);
