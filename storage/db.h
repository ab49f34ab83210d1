/*
 * Database worker pool. Each worker thread owns one libpq connection and
 * runs jobs that may block (COPY, long transactions); their completion
 * callbacks run on the event loop, so the loop never waits on a query.
 * Quick jobs (status, control queries) have a lane of their own so they
 * are never stuck behind a large apply.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct event_base;

typedef struct db_pool db_pool_t;

typedef enum {
	DB_QUICK = 0,   /* short queries: served first, by every worker */
	DB_BULK = 1,    /* pulls, applies, upstream syncs: never by worker 0 */
} db_lane_t;

/*! \brief Work run on a worker thread; returns SS_EOK or an error code. */
typedef int (*db_work_fn)(PGconn *conn, void *arg);
/*! \brief Completion run on the event loop with the work's result. */
typedef void (*db_done_cb)(int ret, void *arg);

/*!
 * \brief Start \a threads workers (>= 2) connecting with \a conninfo.
 * The event base must have been created after evthread_use_pthreads().
 */
int db_pool_new(struct event_base *base, const char *conninfo, int threads,
                db_pool_t **out) __attribute__((warn_unused_result));

/*!
 * \brief Queue a job. \a done may be NULL. The caller keeps ownership of
 * \a arg and must keep it alive until \a done runs.
 */
int db_submit(db_pool_t *p, db_lane_t lane, db_work_fn work, db_done_cb done,
              void *arg) __attribute__((warn_unused_result));

/*!
 * \brief Run every queued job to completion, calling the completions on
 * the caller's thread (for shutdown, once the loop has stopped).
 */
void db_pool_drain(db_pool_t *p);

/*! \brief Stop workers after their current job; queued jobs are dropped. */
void db_pool_free(db_pool_t *p);

/*! \brief Jobs queued or running, for status and tests. */
int db_pool_pending(db_pool_t *p);

/*!
 * \brief Run a statement without results; on error copy the message.
 * \return SS_EOK or SS_EDB.
 */
int db_exec(PGconn *conn, const char *sql, char *err, size_t errlen);

/*! \brief Run a parameterised statement without results. */
int db_execp(PGconn *conn, const char *sql, int n, const char *const *params,
             char *err, size_t errlen);

/*!
 * \brief Run a parameterised query expecting rows.
 * \param out Output: result, caller PQclear()s. NULL on error.
 */
int db_query(PGconn *conn, const char *sql, int n, const char *const *params,
             PGresult **out, char *err, size_t errlen);

/*!
 * \brief Run a parameterised query returning one row of counts; store its
 *        first \a nout columns in \a out.
 */
int db_query_u64(PGconn *conn, const char *sql, int n, const char *const *params,
                 uint64_t *out, int nout, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief Copy a libpq error into \a err without the trailing newline. */
void db_errcopy(const char *msg, char *err, size_t errlen);

/*!
 * \brief Connect synchronously (startup, CLI-free tools).
 */
int db_connect(const char *conninfo, PGconn **out, char *err, size_t errlen);

/*!
 * \brief Apply pending schema migrations (storage/schema/NNN_*.sql), each
 * in its own transaction, under an advisory lock so that several daemons
 * sharing a database migrate once.
 */
int db_migrate(PGconn *conn, char *err, size_t errlen);
