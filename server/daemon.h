/*
 * The daemon's context: the only mutable state of sitesyncd. Every module
 * gets it passed explicitly; nothing lives in globals.
 */
#pragma once

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "proto/sitesync.pb-c.h"
#include "replication/digest.h"
#include "replication/manifest.h"
#include "replication/rowsig.h"
#include "server/conf.h"

struct evdns_base;
struct evconnlistener;
struct db_pool;
struct ctl;
struct http;
struct child_link;
struct parent_link;
struct spool;
struct status_table;
struct upstream_job;
struct writer_lock;

/* Stable status message ids (DESIGN §4); 67xx as operators know them. */
enum {
	SS_MSG_SYNC_STARTED = 6701,
	SS_MSG_SYNC_DONE = 6702,
	SS_MSG_SYNC_FAILED = 6703,
	SS_MSG_SYNC_FETCHING = 6704,
	SS_MSG_SYNC_WRITING = 6705,
	SS_MSG_OUT_OF_SYNC = 6707,
	SS_MSG_REQUEST_SENT = 7101,
	SS_MSG_CHILD_CONNECTED = 7102,
	SS_MSG_CHILD_LOST = 7103,
	SS_MSG_CHILD_REFUSED = 7104,
	SS_MSG_SITE_STALE = 7105,
	SS_MSG_SITE_RECOVERED = 7106,
	SS_MSG_PARENT_CONNECTED = 7107,
	SS_MSG_PARENT_LOST = 7108,
	SS_MSG_UNCHANGED = 7109,
	SS_MSG_IMPORTED = 7110,
	SS_MSG_EXPORTED = 7111,
	SS_MSG_ROWS_REFUSED = 7112,
	SS_MSG_CERT_EXPIRING = 7113,
	SS_MSG_CERT_RENEWED = 7114,
};

typedef struct {
	Sitesync__SyncState state;
	time_t last_start;
	time_t last_end;
	time_t last_success;
	int last_error_code;          /* positive, 0 = none */
	char last_error[256];
	uint64_t added, changed, removed, expired;
	uint32_t consecutive_failures;
	time_t next_retry;
	time_t behind_since;
	uint64_t progress_done;
	uint64_t progress_total;
	uint64_t bytes_received;
} sync_status_t;

typedef struct daemon {
	/* Set at startup. */
	conf_t *conf;
	const char *conf_path;
	struct event_base *base;
	struct evdns_base *dns;
	struct db_pool *db;
	SSL_CTX *tls_server;
	SSL_CTX *tls_client;
	uint8_t hierarchy_id[32];
	time_t cert_expires;
	manifest_keys_t keys;         /* signing (top) and trusted manifest keys */
	rowsig_t rowsig;              /* signs our status row, verifies others' */
	bool rowsig_ok;
	struct evconnlistener *listener;
	struct ctl *ctl;
	struct http *http;
	int sync_log_fd;

	/* Catalog as committed in this site's database. */
	uint64_t version;
	digest_t digest;
	uint64_t entries;
	uint64_t top_version;         /* newest top version known here */
	time_t version_at;            /* when `version` was committed here */

	/* Children. */
	char (*approved)[4];          /* approved child site codes */
	size_t n_approved;
	struct child_link *children;  /* connected sessions */
	uint64_t next_child_id;
	uint64_t next_queue_seq;
	struct spool *spools;         /* produced pull streams */
	atomic_uint_fast64_t spool_bytes; /* their size on disk, written by producers */

	/* Parent. */
	struct parent_link *parent;

	/* Status of this site and its subtree. */
	sync_status_t self;
	struct status_table *subtree;
	bool status_dirty;
	struct event *status_ev;      /* debounced report upwards */

	/* Top site: upstream syncs. */
	struct upstream_job *upstream;
	bool import_running;          /* a bundle import is being applied */
	bool sync_again;              /* a sync was asked for while one ran */
	bool sync_again_full;
	struct event *schedule_ev;
	struct event *retry_ev;
	void *schedule;               /* schedule_t *, NULL without [schedule] cron */
	time_t next_run;              /* next scheduled upstream sync, 0 = none */
	time_t last_upstream_sync;    /* from the database at startup */

	/* High availability: only the holder of the writer lock syncs and writes. */
	struct writer_lock *wlock;
	bool active;
	struct event *follow_ev;      /* standby: notice the active writer's commits */
	int exit_code;

	/* Alerts (server/alert.c). */
	struct alert_state *alerts;

	/* Shutdown. */
	struct event *sig_ev[4];
	int sigterm_count;
	int live_conns;               /* connections not yet freed */
} daemon_t;

/*! \brief Append one line to the site's sync log (thread-safe). */
void daemon_synclog(daemon_t *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*!
 * \brief A sync or import succeeded: this site's status row says so, with
 * the counts of what changed and the items processed.
 */
void daemon_sync_succeeded(daemon_t *d, uint64_t added, uint64_t changed, uint64_t removed,
                           uint64_t expired, uint64_t items);

/*! \brief Sync log: "Updated N items (...), new catalog version is V". */
void daemon_synclog_updated(daemon_t *d, uint64_t items, uint64_t added, uint64_t changed,
                            uint64_t removed, uint64_t version, const char *suffix);

/*! \brief Sync log: "<prefix>Sync time: 0d00h02m57s" since last_sync_start. */
void daemon_synclog_time(daemon_t *d, const char *prefix);

/*! \brief Trust a key that a verified manifest announced (rotation). */
void daemon_trust_announced(daemon_t *d, bool announced, const uint8_t key[32]);

/*! \brief Record a status message (database, asynchronously) and log it. */
void daemon_message(daemon_t *d, int msg_id, const char *severity,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*! \brief A new catalog version is committed here: tell children, report up. */
void daemon_version_committed(daemon_t *d, uint64_t version, const digest_t *digest,
                              uint64_t entries, bool full);

/*! \brief Own status changed: schedule a report to the parent. */
void daemon_status_changed(daemon_t *d);

/*! \brief Create the daemon's own timers (status report debounce). */
int daemon_events_init(daemon_t *d);
void daemon_events_free(daemon_t *d);

/*! \brief Is \a site an approved child? */
bool daemon_child_approved(const daemon_t *d, const char *site);

/*! \brief Set the approved children list (copied). */
int daemon_set_approved(daemon_t *d, char (*sites)[4], size_t n);
