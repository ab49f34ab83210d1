/* Advisory-lock election of the active writer among daemons sharing a database. */
#include "storage/writer_lock.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>
#include <libpq-fe.h>

#include "common/errcode.h"
#include "common/log.h"
#include "storage/db.h"

/* Fixed key: one writer per site database. */
#define WRITER_LOCK_KEY "7411960002"

struct writer_lock {
	struct event_base *base;
	struct event *ev;
	char *conninfo;
	writer_lock_cb cb;
	void *arg;
	pthread_t tid;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	bool stopping;
	bool held;              /* as last reported to the loop */
	int pending_event;      /* -1 none, else writer_lock_event_t */
};

static void lock_post(writer_lock_t *l, writer_lock_event_t ev)
{
	pthread_mutex_lock(&l->mu);
	l->pending_event = (int)ev;
	pthread_mutex_unlock(&l->mu);
	event_active(l->ev, EV_READ, 0);
}

static bool lock_wait(writer_lock_t *l, int ms)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000L;
	if (ts.tv_nsec >= 1000000000L) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&l->mu);
	if (!l->stopping)
		pthread_cond_timedwait(&l->cv, &l->mu, &ts);
	bool stop = l->stopping;
	pthread_mutex_unlock(&l->mu);
	return stop;
}

static void *lock_main(void *arg)
{
	writer_lock_t *l = arg;
	PGconn *conn = NULL;
	bool held = false;
	char err[256];
	for (;;) {
		if (conn == NULL && db_connect(l->conninfo, &conn, err, sizeof(err)) != SS_EOK)
			conn = NULL;
		if (conn) {
			PGresult *r = PQexec(conn, held ? "SELECT 1"
			                     : "SELECT pg_try_advisory_lock(" WRITER_LOCK_KEY ")");
			bool ok = PQresultStatus(r) == PGRES_TUPLES_OK;
			bool got = ok && !held && PQgetvalue(r, 0, 0)[0] == 't';
			PQclear(r);
			if (!ok) {
				/* The session is gone and with it the lock. */
				PQfinish(conn);
				conn = NULL;
				if (held) {
					held = false;
					lock_post(l, WRITER_LOCK_LOST);
				}
			} else if (got) {
				held = true;
				lock_post(l, WRITER_LOCK_ACQUIRED);
			}
		}
		if (lock_wait(l, 1000))
			break;
	}
	PQfinish(conn);
	return NULL;
}

static void lock_event_cb(evutil_socket_t fd, short what, void *arg)
{
	writer_lock_t *l = arg;
	pthread_mutex_lock(&l->mu);
	int ev = l->pending_event;
	l->pending_event = -1;
	pthread_mutex_unlock(&l->mu);
	if (ev < 0)
		return;
	l->held = ev == WRITER_LOCK_ACQUIRED;
	l->cb((writer_lock_event_t)ev, l->arg);
}

int writer_lock_start(struct event_base *base, const char *conninfo,
                      writer_lock_cb cb, void *arg, writer_lock_t **out)
{
	writer_lock_t *l = calloc(1, sizeof(*l));
	if (l == NULL)
		return SS_ENOMEM;
	l->base = base;
	l->cb = cb;
	l->arg = arg;
	l->pending_event = -1;
	l->conninfo = strdup(conninfo);
	l->ev = event_new(base, -1, 0, lock_event_cb, l);
	if (l->conninfo == NULL || l->ev == NULL)
		goto fail;
	pthread_mutex_init(&l->mu, NULL);
	pthread_cond_init(&l->cv, NULL);
	if (pthread_create(&l->tid, NULL, lock_main, l) != 0) {
		pthread_cond_destroy(&l->cv);
		pthread_mutex_destroy(&l->mu);
		goto fail;
	}
	*out = l;
	return SS_EOK;
fail:
	if (l->ev)
		event_free(l->ev);
	free(l->conninfo);
	free(l);
	return SS_ENOMEM;
}

void writer_lock_free(writer_lock_t *l)
{
	if (l == NULL)
		return;
	pthread_mutex_lock(&l->mu);
	l->stopping = true;
	pthread_cond_broadcast(&l->cv);
	pthread_mutex_unlock(&l->mu);
	pthread_join(l->tid, NULL);
	pthread_cond_destroy(&l->cv);
	pthread_mutex_destroy(&l->mu);
	event_free(l->ev);
	free(l->conninfo);
	free(l);
}
