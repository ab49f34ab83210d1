/* Worker threads with one PostgreSQL connection each; results return to the loop. */
#include "storage/db.h"

#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <event2/event.h>

#include "common/errcode.h"
#include "common/log.h"
#include "storage/schema_sql.h"

typedef struct db_job {
	struct db_job *next;
	db_work_fn work;
	db_done_cb done;
	void *arg;
	int ret;
} db_job_t;

typedef struct {
	db_job_t *head, *tail;
} db_queue_t;

typedef struct {
	db_pool_t *pool;
	pthread_t tid;
	int index;
	PGconn *conn;
} db_worker_t;

struct db_pool {
	struct event_base *base;
	struct event *done_ev;      /* activated by workers, runs completions */
	char *conninfo;
	pthread_mutex_t mu;
	pthread_cond_t cv;
	db_queue_t lanes[2];
	db_queue_t finished;
	int pending;
	bool stopping;
	int nworkers;
	db_worker_t *workers;
};

static void queue_push(db_queue_t *q, db_job_t *j)
{
	j->next = NULL;
	if (q->tail)
		q->tail->next = j;
	else
		q->head = j;
	q->tail = j;
}

static db_job_t *queue_pop(db_queue_t *q)
{
	db_job_t *j = q->head;
	if (j) {
		q->head = j->next;
		if (q->head == NULL)
			q->tail = NULL;
	}
	return j;
}

static void queue_drop(db_queue_t *q)
{
	db_job_t *j;
	while ((j = queue_pop(q)) != NULL)
		free(j);
}

void db_errcopy(const char *msg, char *err, size_t errlen)
{
	if (err == NULL || errlen == 0)
		return;
	snprintf(err, errlen, "%s", msg ? msg : "unknown database error");
	size_t n = strlen(err);
	while (n > 0 && (err[n - 1] == '\n' || err[n - 1] == ' '))
		err[--n] = '\0';
}

/* Session settings; again after a reset, which starts a new session. */
static void session_setup(PGconn *c)
{
	/* Our own writes must not wait for a synchronous standby we do not know of. */
	PGresult *r = PQexec(c, "SET application_name = 'sitesyncd'; SET client_min_messages = warning");
	PQclear(r);
	/* Entry contents are toasted on every write (stages and `updates`);
	 * lz4 costs about half of pglz's CPU for the same size here. A server
	 * built without lz4 refuses the setting and keeps pglz. */
	r = PQexec(c, "SET default_toast_compression = lz4");
	PQclear(r);
	/* A full snapshot reads the catalog in its stored order (stream.c):
	 * the same rows must come in the same order every time, so a scan may
	 * not join another one halfway through the table. */
	r = PQexec(c, "SET synchronize_seqscans = off");
	PQclear(r);
}

int db_connect(const char *conninfo, PGconn **out, char *err, size_t errlen)
{
	PGconn *c = PQconnectdb(conninfo);
	if (c == NULL) {
		db_errcopy("out of memory", err, errlen);
		return SS_ENOMEM;
	}
	if (PQstatus(c) != CONNECTION_OK) {
		db_errcopy(PQerrorMessage(c), err, errlen);
		PQfinish(c);
		return SS_EDB;
	}
	session_setup(c);
	*out = c;
	return SS_EOK;
}

/* Reconnect when the server went away, so one restart of PostgreSQL does
 * not leave a worker broken for good. */
/* An idle session has nothing to say: readable means the server closed it
 * (a restart, pg_terminate_backend) or sent a notice. Reading it lets libpq
 * notice the end now, not in the middle of the next job. */
static bool idle_conn_alive(PGconn *c)
{
	for (int i = 0; i < 4; i++) {
		struct pollfd pfd = { .fd = PQsocket(c), .events = POLLIN };
		if (pfd.fd < 0)
			return false;
		if (poll(&pfd, 1, 0) <= 0)
			break;
		if (!PQconsumeInput(c))
			return false;
	}
	return PQstatus(c) == CONNECTION_OK;
}

static PGconn *worker_conn(db_worker_t *w)
{
	if (w->conn && PQstatus(w->conn) == CONNECTION_OK && idle_conn_alive(w->conn))
		return w->conn;
	if (w->conn) {
		PQreset(w->conn);
		if (PQstatus(w->conn) == CONNECTION_OK) {
			session_setup(w->conn);
			return w->conn;
		}
		PQfinish(w->conn);
		w->conn = NULL;
	}
	char err[256];
	if (db_connect(w->pool->conninfo, &w->conn, err, sizeof(err)) != SS_EOK) {
		log_warning("database worker %d: cannot connect: %s", w->index, err);
		w->conn = NULL;
	}
	return w->conn;
}

static void *worker_main(void *arg)
{
	db_worker_t *w = arg;
	db_pool_t *p = w->pool;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		db_job_t *j = NULL;
		while (!p->stopping) {
			j = queue_pop(&p->lanes[DB_QUICK]);
			if (j == NULL && w->index != 0)
				j = queue_pop(&p->lanes[DB_BULK]);
			if (j)
				break;
			pthread_cond_wait(&p->cv, &p->mu);
		}
		if (p->stopping) {
			free(j);
			break;
		}
		pthread_mutex_unlock(&p->mu);

		PGconn *c = worker_conn(w);
		j->ret = c ? j->work(c, j->arg) : SS_EDB;
		/* A job that died mid-transaction must not leak it into the next. */
		if (c && PQtransactionStatus(c) != PQTRANS_IDLE) {
			PGresult *r = PQexec(c, "ROLLBACK");
			PQclear(r);
		}

		pthread_mutex_lock(&p->mu);
		queue_push(&p->finished, j);
		event_active(p->done_ev, EV_READ, 0);
	}
	pthread_mutex_unlock(&p->mu);
	PQfinish(w->conn);
	w->conn = NULL;
	return NULL;
}

static void pool_done_cb(evutil_socket_t fd, short what, void *arg)
{
	db_pool_t *p = arg;
	for (;;) {
		pthread_mutex_lock(&p->mu);
		db_job_t *j = queue_pop(&p->finished);
		if (j)
			p->pending--;
		pthread_mutex_unlock(&p->mu);
		if (j == NULL)
			break;
		if (j->done)
			j->done(j->ret, j->arg);
		free(j);
	}
}

int db_pool_new(struct event_base *base, const char *conninfo, int threads,
                db_pool_t **out)
{
	if (threads < 2)
		return SS_EINVAL;
	db_pool_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return SS_ENOMEM;
	p->base = base;
	p->conninfo = strdup(conninfo);
	p->workers = calloc((size_t)threads, sizeof(*p->workers));
	p->done_ev = event_new(base, -1, 0, pool_done_cb, p);
	if (!p->conninfo || !p->workers || !p->done_ev)
		goto fail;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->cv, NULL);
	for (int i = 0; i < threads; i++) {
		p->workers[i].pool = p;
		p->workers[i].index = i;
		if (pthread_create(&p->workers[i].tid, NULL, worker_main, &p->workers[i]) != 0) {
			p->nworkers = i;
			db_pool_free(p);
			return SS_ENOMEM;
		}
		p->nworkers = i + 1;
	}
	*out = p;
	return SS_EOK;
fail:
	if (p->done_ev)
		event_free(p->done_ev);
	free(p->workers);
	free(p->conninfo);
	free(p);
	return SS_ENOMEM;
}

int db_submit(db_pool_t *p, db_lane_t lane, db_work_fn work, db_done_cb done,
              void *arg)
{
	db_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return SS_ENOMEM;
	j->work = work;
	j->done = done;
	j->arg = arg;
	pthread_mutex_lock(&p->mu);
	queue_push(&p->lanes[lane], j);
	p->pending++;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	return SS_EOK;
}

void db_pool_drain(db_pool_t *p)
{
	for (;;) {
		pool_done_cb(-1, 0, p);
		pthread_mutex_lock(&p->mu);
		int left = p->pending;
		pthread_mutex_unlock(&p->mu);
		if (left == 0)
			break;
		struct timespec ts = { 0, 5000000 };
		nanosleep(&ts, NULL);
	}
}

int db_pool_pending(db_pool_t *p)
{
	pthread_mutex_lock(&p->mu);
	int n = p->pending;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void db_pool_free(db_pool_t *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->stopping = true;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	for (int i = 0; i < p->nworkers; i++)
		pthread_join(p->workers[i].tid, NULL);
	queue_drop(&p->lanes[0]);
	queue_drop(&p->lanes[1]);
	queue_drop(&p->finished);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	event_free(p->done_ev);
	free(p->workers);
	free(p->conninfo);
	free(p);
}

static int result_ok(PGresult *r, char *err, size_t errlen)
{
	ExecStatusType st = PQresultStatus(r);
	if (st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK)
		return SS_EOK;
	db_errcopy(PQresultErrorMessage(r), err, errlen);
	return SS_EDB;
}

int db_exec(PGconn *conn, const char *sql, char *err, size_t errlen)
{
	PGresult *r = PQexec(conn, sql);
	int ret = r ? result_ok(r, err, errlen) : SS_EDB;
	if (r == NULL)
		db_errcopy(PQerrorMessage(conn), err, errlen);
	PQclear(r);
	return ret;
}

int db_execp(PGconn *conn, const char *sql, int n, const char *const *params,
             char *err, size_t errlen)
{
	PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	int ret = r ? result_ok(r, err, errlen) : SS_EDB;
	if (r == NULL)
		db_errcopy(PQerrorMessage(conn), err, errlen);
	PQclear(r);
	return ret;
}

int db_query(PGconn *conn, const char *sql, int n, const char *const *params,
             PGresult **out, char *err, size_t errlen)
{
	*out = NULL;
	PGresult *r = PQexecParams(conn, sql, n, NULL, params, NULL, NULL, 0);
	if (r == NULL) {
		db_errcopy(PQerrorMessage(conn), err, errlen);
		return SS_EDB;
	}
	int ret = result_ok(r, err, errlen);
	if (ret != SS_EOK) {
		PQclear(r);
		return ret;
	}
	*out = r;
	return SS_EOK;
}

int db_query_u64(PGconn *conn, const char *sql, int n, const char *const *params,
                 uint64_t *out, int nout, char *err, size_t errlen)
{
	PGresult *r = NULL;
	int ret = db_query(conn, sql, n, params, &r, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) != 1 || PQnfields(r) < nout) {
		snprintf(err, errlen, "expected one row of %d counts, got %d rows", nout, PQntuples(r));
		ret = SS_EDB;
	}
	for (int i = 0; ret == SS_EOK && i < nout; i++)
		out[i] = strtoull(PQgetvalue(r, 0, i), NULL, 10);
	PQclear(r);
	return ret;
}

/* Arbitrary but fixed: the advisory lock key that serialises migrations. */
#define DB_MIGRATE_LOCK "7411960001"

int db_migrate(PGconn *conn, char *err, size_t errlen)
{
	int ret = db_exec(conn, "SELECT pg_advisory_lock(" DB_MIGRATE_LOCK ")", err, errlen);
	if (ret != SS_EOK)
		return ret;
	ret = db_exec(conn, "CREATE TABLE IF NOT EXISTS schema_migrations ("
	              "version integer PRIMARY KEY, name text NOT NULL, "
	              "applied_at timestamptz NOT NULL DEFAULT now())", err, errlen);
	if (ret != SS_EOK)
		goto out;
	for (size_t i = 0; i < schema_migrations_count; i++) {
		const schema_migration_t *m = &schema_migrations[i];
		char ver[16];
		snprintf(ver, sizeof(ver), "%d", m->version);
		const char *params[] = { ver, m->name };
		PGresult *r = NULL;
		ret = db_query(conn, "SELECT 1 FROM schema_migrations WHERE version = $1",
		               1, params, &r, err, errlen);
		if (ret != SS_EOK)
			goto out;
		bool done = PQntuples(r) > 0;
		PQclear(r);
		if (done)
			continue;
		log_notice("applying schema migration %d (%s)", m->version, m->name);
		if ((ret = db_exec(conn, "BEGIN", err, errlen)) != SS_EOK ||
		    (ret = db_exec(conn, m->sql, err, errlen)) != SS_EOK ||
		    (ret = db_execp(conn, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
		                    2, params, err, errlen)) != SS_EOK ||
		    (ret = db_exec(conn, "COMMIT", err, errlen)) != SS_EOK) {
			char tmp[256];
			snprintf(tmp, sizeof(tmp), "migration %d (%s): %s", m->version, m->name, err);
			snprintf(err, errlen, "%s", tmp);
			db_exec(conn, "ROLLBACK", NULL, 0);
			goto out;
		}
	}
out:
	db_exec(conn, "SELECT pg_advisory_unlock(" DB_MIGRATE_LOCK ")", NULL, 0);
	return ret;
}
