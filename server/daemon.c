/* The shell's subscriptions to the site context's events. */
#include "server/daemon.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/errcode.h"
#include "replication/synchist.h"
#include "common/log.h"
#include "storage/db.h"

typedef struct {
	char site[4];
	char msg_id[12];
	char severity[12];
	char text[512];
	char at[40];            /* stamped on the loop: emission order */
	bool relayed;           /* from a site below: insert once per site, id and time */
} message_job_t;

static int message_work(PGconn *conn, void *arg)
{
	message_job_t *m = arg;
	/* Test hook: workers finish out of order, as they may under load, so a
	 * test sees that the history's order does not depend on it. */
	const char *shuffle = getenv("SITESYNC_TEST_SHUFFLE_MESSAGES");
	if (shuffle && strcmp(shuffle, "1") == 0)
		usleep((useconds_t)(((unsigned)m->at[strlen(m->at) - 4] * 7919u) % 40u) * 1000u);
	const char *p[] = { m->site, m->msg_id, m->severity, m->text, m->at };
	if (m->relayed)
		/* Reports repeat a site's newest messages, and come again after a
		 * restart here: the site's own time tells a message recorded before. */
		return db_execp(conn, "INSERT INTO status_messages (site, msg_id, severity, text, at) "
		                "SELECT $1, $2::int, $3, $4, $5::timestamptz WHERE NOT EXISTS (SELECT 1 "
		                "FROM status_messages WHERE at = $5::timestamptz AND site = $1 "
		                "AND msg_id = $2::int)", 5, p, NULL, 0);
	return db_execp(conn, "INSERT INTO status_messages (site, msg_id, severity, text, at) "
	                "VALUES ($1, $2, $3, $4, $5::timestamptz)", 5, p, NULL, 0);
}

static void message_done(int ret, void *arg)
{
	free(arg);
}

static void message_store(site_t *s, const char *site, int msg_id, const char *severity,
                          const char *text, bool relayed, int64_t at_us);

/* site_events_t.message: store it for `sitesync history` (asynchronously). */
static void on_message(site_t *s, int msg_id, const char *severity, const char *text)
{
	message_store(s, s->conf->site_code, msg_id, severity, text, false, 0);
}

/* site_events_t.relayed: a site below's error message, in our history too. */
static void on_relayed(site_t *s, const char *origin, int msg_id, const char *severity,
                       const char *text, int64_t at_us)
{
	message_store(s, origin, msg_id, severity, text, true, at_us);
}

/* Our own message is stamped now; a relayed one keeps its site's time. */
static void message_store(site_t *s, const char *site, int msg_id, const char *severity,
                          const char *text, bool relayed, int64_t at_us)
{
	message_job_t *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return;
	snprintf(m->text, sizeof(m->text), "%s", text);
	snprintf(m->site, sizeof(m->site), "%s", site);
	snprintf(m->msg_id, sizeof(m->msg_id), "%d", msg_id);
	snprintf(m->severity, sizeof(m->severity), "%s", severity);
	if (relayed) {
		struct tm tm;
		time_t sec = (time_t)(at_us / 1000000);
		gmtime_r(&sec, &tm);
		size_t n = strftime(m->at, sizeof(m->at), "%Y-%m-%d %H:%M:%S", &tm);
		snprintf(m->at + n, sizeof(m->at) - n, ".%06ld+00", (long)(at_us % 1000000));
		m->relayed = true;
	} else {
		/* Every worker serves the quick lane, so ids follow insertion, not
		 * emission: the time stamped here is what orders the history. */
		synchist_stamp(m->at, sizeof(m->at));
	}
	if (s->db == NULL || db_submit(s->db, DB_QUICK, message_work, message_done, m) != SS_EOK)
		free(m);
	/* A tenth of the kept rows written since the last prune: prune again,
	 * so the table stays near its bound however fast rows come. */
	daemon_t *d = s->owner;
	if (++d->messages_since_prune >= (unsigned)s->conf->messages_keep / 10)
		daemon_prune_messages(d);
}

typedef struct {
	char keep[16];
	char days[16];
} prune_job_t;

static int prune_work(PGconn *conn, void *arg)
{
	prune_job_t *j = arg;
	const char *p[] = { j->days, j->keep };
	/* Older than the age limit, or beyond the newest `keep` rows. */
	return db_execp(conn, "DELETE FROM status_messages WHERE at < now() - make_interval(days => $1::int) "
	                "OR id <= (SELECT id FROM status_messages ORDER BY id DESC OFFSET $2::int LIMIT 1)",
	                2, p, NULL, 0);
}

static void prune_done(int ret, void *arg)
{
	if (ret != SS_EOK)
		log_warning("pruning the history failed (%s)", ss_strerror(ret));
	free(arg);
}

void daemon_prune_messages(daemon_t *d)
{
	d->messages_since_prune = 0;
	prune_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return;
	snprintf(j->keep, sizeof(j->keep), "%d", d->site.conf->messages_keep);
	snprintf(j->days, sizeof(j->days), "%d", d->site.conf->messages_days);
	if (d->site.db == NULL || db_submit(d->site.db, DB_BULK, prune_work, prune_done, j) != SS_EOK)
		free(j);
}

static void prune_cb(evutil_socket_t fd, short what, void *arg)
{
	daemon_prune_messages(arg);
}

int daemon_events_init(daemon_t *d)
{
	/* At start, then every ten minutes (and after a burst of rows,
	 * on_message()). */
	d->prune_ev = event_new(d->site.base, -1, EV_PERSIST, prune_cb, d);
	struct timeval every = { 600, 0 };
	if (d->prune_ev == NULL || event_add(d->prune_ev, &every) != 0)
		return SS_ENOMEM;
	event_active(d->prune_ev, EV_TIMEOUT, 0);
	return SS_EOK;
}

void daemon_events_free(daemon_t *d)
{
	if (d->prune_ev)
		event_free(d->prune_ev);
	d->prune_ev = NULL;
}

static const site_events_t daemon_events = {
	.message = on_message,
	.relayed = on_relayed,
};

void daemon_subscribe(daemon_t *d)
{
	d->site.events = &daemon_events;
	d->site.owner = d;
}
