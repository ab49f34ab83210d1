/*
 * A COPY FROM STDIN sent by a thread of its own: the caller builds rows
 * into a copybuf and hands the filled buffer over, so it never waits on
 * the socket while PostgreSQL has data to read, and PostgreSQL never
 * waits while the caller builds the next rows. The caller must not use
 * the connection between copy_pipe_start() and copy_pipe_finish().
 */
#pragma once

#include <libpq-fe.h>
#include <stddef.h>

#include "storage/copy.h"

typedef struct copy_pipe copy_pipe_t;

/*! \brief Start the sender for a connection in COPY IN state. */
int copy_pipe_start(copy_pipe_t **out, PGconn *conn)
	__attribute__((warn_unused_result));

/*!
 * \brief Hand over cb's bytes when it holds at least \a threshold (0: any);
 *        cb gets an empty buffer back (waiting while others are queued).
 * \return SS_EOK, or the sender's first error (message in err).
 */
int copy_pipe_put(copy_pipe_t *p, copybuf_t *cb, size_t threshold, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Wait until everything handed over was sent, stop the sender and
 *        free it. The COPY itself is still open (copy_finish() ends it).
 * \return SS_EOK, or the sender's first error (message in err).
 */
int copy_pipe_finish(copy_pipe_t *p, char *err, size_t errlen);
