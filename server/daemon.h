/*
 * The daemon's context: the only mutable state of sitesyncd. Every module
 * gets it passed explicitly; nothing lives in globals. The replication
 * state is the site context it embeds (replication/site.h); the rest is
 * the shell's: control socket, HTTP, schedule, writer lock, signals.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "common/log.h"
#include "replication/site.h"

struct evconnlistener;
struct ctl;
struct http;
struct upstream_job;
struct writer_lock;

typedef struct daemon {
	/* The replication state (replication/site.h); site.owner is this. */
	site_t site;

	/* Set at startup. */
	const char *conf_path;
	SSL_CTX *tls_server;
	struct evconnlistener *listener;
	struct conn_listen_guard *listen_guard;  /* pauses it on EMFILE */
	log_rate_t pending_rate;      /* "refusing a connection": one line per window */
	struct event *prune_ev;       /* history (status_messages) pruning */
	unsigned messages_since_prune;
	uint64_t pending_refused;     /* connections refused by the pre-Hello caps */
	struct ctl *ctl;
	struct http *http;

	/* Top site: upstream syncs. */
	struct upstream_job *upstream;
	bool sync_again;              /* a sync was asked for while one ran */
	bool sync_again_full;
	bool sync_again_allow;        /* ... confirmed with --allow-removal */
	char sync_again_trigger[16];  /* ... by whom (manual wins), for the history */
	struct event *schedule_ev;
	struct event *retry_ev;
	void *schedule;               /* schedule_t *, NULL without [schedule] cron */
	time_t next_run;              /* next scheduled upstream sync, 0 = none */
	time_t last_upstream_sync;    /* from the database at startup */

	/* High availability: only the holder of the writer lock syncs and writes
	 * (site.active says whether this daemon holds it). */
	struct writer_lock *wlock;
	struct event *follow_ev;      /* standby: notice the active writer's commits */
	int exit_code;

	/* Alerts (server/alert.c). */
	struct alert_state *alerts;

	/* Shutdown. */
	struct event *sig_ev[4];
	int sigterm_count;
} daemon_t;

/*!
 * \brief Subscribe the shell to d->site's events: status messages are
 * stored for `sitesync history`.
 */
void daemon_subscribe(daemon_t *d);

/*!
 * \brief Create the shell's own timers: the history is pruned at start,
 * then every ten minutes (and after a burst of rows).
 */
int daemon_events_init(daemon_t *d);

/*! \brief Prune the history now: [status] messages_keep and messages_days. */
void daemon_prune_messages(daemon_t *d);
void daemon_events_free(daemon_t *d);
