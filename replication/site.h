/*
 * The site context: this site's replication state, owned by replication/.
 * The catalog version it holds, its digest and entries, the approved and
 * connected children, the parent link, the spools, the subtree's status
 * and the site's own sync status. The daemon shell (server/) embeds it,
 * fills in what startup sets, and subscribes to its events; replication
 * never sees the shell.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <event2/event.h>
#include <jansson.h>
#include <openssl/ssl.h>

#include "catalog/digest.h"
#include "catalog/manifest.h"
#include "common/conf.h"
#include "common/log.h"
#include "proto/sitesync.pb-c.h"
#include "replication/apply.h"
#include "replication/rowsig.h"

struct evdns_base;
struct db_pool;
struct child_link;
struct parent_link;
struct spool;
struct status_table;

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
	SS_MSG_REMOVAL_REFUSED = 7130,  /* a sync would remove too much (upstream/removal.h) */
	SS_MSG_SETTING_CHANGED = 7140,  /* sitesync settings set (server/ctl_settings.c) */
	SS_MSG_UPDATE_REMOVED = 7141,   /* sitesync remove-update (server/ctl_upstream.c) */
	SS_MSG_RELOAD_REFUSED = 7142,   /* a reload kept the running configuration (server/main.c) */
	SS_MSG_RELOADED = 7143,         /* the configuration was reloaded */
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
	/* What started the current (or last) sync and where it comes from,
	 * for the sync history: manual, scheduled, retry, parent, import. */
	char trigger[16];
	char source[160];
} sync_status_t;

/* One finished sync as the sync history records it (table sync_history);
 * the newest SITE_RECENT_SYNCS are kept in memory for the dashboard. */
#define SITE_RECENT_SYNCS 20
typedef struct {
	char kind[12];                /* upstream, pull, import */
	char result[12];              /* succeeded, unchanged, failed */
	char trigger[16];
	char source[160];
	char by_source[1024];         /* several sources: each one's counts */
	time_t started, ended;
	uint64_t from, to;
	uint64_t added, changed, removed, expired;
	int error_code;
	char error[256];
} site_sync_t;

/* A site that tried to connect as a child without being approved. */
typedef struct {
	char site[4];
	char addr[64];
	time_t first, last;
	uint32_t attempts;
} site_pending_t;

/* An error message of this site that its status row carries upwards
 * (proto SiteMessage); at most SITE_RELAY_MAX, [status] relay_messages. */
#define SITE_RELAY_MAX 16
#define SITE_RELAY_TEXT 240           /* bytes of text relayed: rows stay small */
typedef struct {
	int msg_id;
	int64_t at_us;                /* unix microseconds, strictly increasing here */
	char text[SITE_RELAY_TEXT];
} site_relay_msg_t;

struct site;

/* Peers whose refusals are rate-limited one by one; more share the oldest slot. */
#define SITE_REFUSALS 64

/*
 * What the site tells its owner (the daemon shell); any may be NULL. They
 * run on the loop, after the site's own state is updated.
 */
typedef struct {
	/* A new catalog version is committed here (children already told). */
	void (*version_committed)(struct site *s, uint64_t version, bool full);
	/* This site's own status changed (a report upward is scheduled). */
	void (*status_changed)(struct site *s);
	/* A sync (pull, import or upstream sync) ended, \a ok or failed. */
	void (*sync_finished)(struct site *s, bool ok);
	/* A status message for operators (already logged). */
	void (*message)(struct site *s, int msg_id, const char *severity, const char *text);
	/* A site below reported an error message of its own (\a origin, when
	 * it emitted it); the same message may come again with later reports. */
	void (*relayed)(struct site *s, const char *origin, int msg_id, const char *severity,
	                const char *text, int64_t at_us);
} site_events_t;

typedef struct site {
	/* Set by the owner at startup. */
	conf_t *conf;
	struct event_base *base;
	struct evdns_base *dns;
	struct db_pool *db;
	SSL_CTX *tls_client;
	uint8_t hierarchy_id[32];
	time_t cert_expires;
	manifest_keys_t keys;         /* signing (top) and trusted manifest keys */
	rowsig_t rowsig;              /* signs our status row, verifies others' */
	bool rowsig_ok;
	int sync_log_fd;
	const site_events_t *events;
	void *owner;                  /* the events' subscriber */

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
	struct event *follow_ev;      /* next look at streams still being produced */
	atomic_uint_fast64_t spool_bytes; /* their size on disk, written by producers */
	site_pending_t *pending;      /* refused, not approved: [children] pending_max */
	struct { char site[4]; time_t since; } *down;  /* approved children lost, since when */
	size_t n_down;
	size_t n_pending;

	/* Parent. */
	struct parent_link *parent;

	/* Status of this site and its subtree. */
	sync_status_t self;
	site_sync_t recent[SITE_RECENT_SYNCS];  /* newest first */
	size_t n_recent;
	struct status_table *subtree;
	site_relay_msg_t relay[SITE_RELAY_MAX];  /* own error messages, newest first */
	size_t n_relay;
	bool status_dirty;
	bool status_lazy;             /* a report is due within half a heartbeat */
	struct event *status_ev;      /* debounced report upwards */

	/* Writes: only the holder of the writer lock pulls, syncs, imports. */
	bool active;
	bool import_running;          /* a bundle import is being applied */
	int live_conns;               /* connections not yet freed */

	/* Refused peers: one log line and history row per window each. */
	struct {
		char key[64];             /* site code, or address without one */
		log_rate_t rate;
	} refusals[SITE_REFUSALS];    /* oldest replaced */
} site_t;

/*! \brief Append one line to the site's sync log (thread-safe). */
void site_synclog(site_t *d, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/*! \brief Sync log: "Updated N items (...), new catalog version is V". */
void site_synclog_updated(site_t *d, uint64_t items, uint64_t added, uint64_t changed,
                          uint64_t removed, uint64_t version, const char *suffix);

/*! \brief Sync log: "<prefix>Sync time: 0d00h02m57s" since last_sync_start. */
void site_synclog_time(site_t *d, const char *prefix);

/*!
 * \brief A sync failed: this site's status row says so (state, time, error
 * code and text, one more consecutive failure). The caller logs and
 * schedules its retry; raises sync_finished.
 */
void sync_status_failed(site_t *d, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*!
 * \brief A pull or an import was applied (\a a): the status row says so
 * with what changed and the items processed; the sync log gets the
 * "Updated" line, the line \a fmt makes and "Sync time". Raises
 * sync_finished.
 */
void sync_status_applied(site_t *d, const apply_t *a, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*!
 * \brief An upstream sync succeeded (no "Updated" epilogue: the top writes
 * its own phase lines). Raises sync_finished.
 */
void sync_status_succeeded(site_t *d, uint64_t added, uint64_t changed, uint64_t removed,
                           uint64_t expired, uint64_t items);

/*! \brief Trust a key that a verified manifest announced (rotation). */
void site_trust_announced(site_t *d, bool announced, const uint8_t key[32]);

/*! \brief Log a status message and raise it to the owner (who records it). */
void site_message(site_t *d, int msg_id, const char *severity,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/*!
 * \brief A row from below carries an error message of its site \a origin:
 * escape its text, log it and raise it to the owner (who records it,
 * once per origin, id and time).
 */
void site_message_relayed(site_t *d, const char *origin, int msg_id, const char *text,
                          int64_t at_us);

/*!
 * \brief A new catalog version is committed here: drop stale spools, tell
 * the children, report up; raises version_committed.
 */
void site_version_committed(site_t *d, uint64_t version, const digest_t *digest,
                            uint64_t entries, bool full);

/*! \brief Own status changed: schedule a report to the parent. */
void site_status_changed(site_t *d);

/*!
 * \brief Only the report times of the subtree moved (a child's heartbeat):
 * schedule a report to the parent within half a heartbeat, unless one
 * goes before. Relaying each child's heartbeat at once sent the parent
 * the whole subtree once per site below it, every heartbeat.
 */
void site_status_touched(site_t *d);

/*! \brief A report just went to the parent: no lazy one is due any more. */
void site_status_sent(site_t *d);

/*!
 * \brief A refused peer (\a key: its site code, or its address) is logged
 * and written to the history at most once per [status]
 * refusal_log_seconds: a flood of refusals must not become a flood of
 * lines and rows.
 * \param skipped  Output: refusals of this peer not recorded since.
 * \return true when this one is to be recorded.
 */
bool site_refusal_allow(site_t *d, const char *key, unsigned long *skipped);

/*! \brief Create the site's own timers (status report debounce). */
int site_events_init(site_t *d);
void site_events_free(site_t *d);

/*! \brief Is \a site an approved child? */
/*!
 * \brief A direct child's link went up or down: remember since when an
 * approved child is down, for this site's own status row.
 */
void site_child_link(site_t *d, const char *site, bool up);

/*! \brief When the link to approved child \a site went down; 0 = unknown. */
time_t site_child_down_since(const site_t *d, const char *site);

/*!
 * \brief Remember a refused, not approved site (for `child list`): at most
 * [children] pending_max, the one heard from longest ago makes room.
 */
void site_pending_note(site_t *d, const char *site, const char *addr);

/*! \brief The remembered refused sites not approved since, newest first. */
json_t *site_pending_json(const site_t *d);

bool site_child_approved(const site_t *d, const char *site);

/*! \brief Set the approved children list (copied). */
int site_set_approved(site_t *d, char (*sites)[4], size_t n);
