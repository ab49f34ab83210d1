/* The shell's subscriptions to the site context's events. */
#include "server/daemon.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/errcode.h"
#include "replication/synchist.h"
#include "storage/db.h"

typedef struct {
	char site[4];
	char msg_id[12];
	char severity[12];
	char text[512];
	char at[40];            /* stamped on the loop: emission order */
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
	return db_execp(conn, "INSERT INTO status_messages (site, msg_id, severity, text, at) "
	                "VALUES ($1, $2, $3, $4, $5::timestamptz)", 5, p, NULL, 0);
}

static void message_done(int ret, void *arg)
{
	free(arg);
}

/* site_events_t.message: store it for `sitesync history` (asynchronously). */
static void on_message(site_t *s, int msg_id, const char *severity, const char *text)
{
	message_job_t *m = calloc(1, sizeof(*m));
	if (m == NULL)
		return;
	snprintf(m->text, sizeof(m->text), "%s", text);
	snprintf(m->site, sizeof(m->site), "%s", s->conf->site_code);
	snprintf(m->msg_id, sizeof(m->msg_id), "%d", msg_id);
	snprintf(m->severity, sizeof(m->severity), "%s", severity);
	/* Every worker serves the quick lane, so ids follow insertion, not
	 * emission: the time stamped here is what orders the history. */
	synchist_stamp(m->at, sizeof(m->at));
	if (s->db == NULL || db_submit(s->db, DB_QUICK, message_work, message_done, m) != SS_EOK)
		free(m);
}

static const site_events_t daemon_events = {
	.message = on_message,
};

void daemon_subscribe(daemon_t *d)
{
	d->site.events = &daemon_events;
	d->site.owner = d;
}
