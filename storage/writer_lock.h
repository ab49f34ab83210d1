/*
 * The writer lock for high availability (DESIGN §7): several sitesyncd
 * may share one site database; a PostgreSQL session-level advisory lock
 * elects the one that syncs and writes. A dedicated thread owns the
 * connection holding the lock, retries every second until it gets it, and
 * watches that connection: losing it means another daemon may take over,
 * so the owner is told and must stop writing at once.
 */
#pragma once

#include <stdbool.h>

struct event_base;

typedef struct writer_lock writer_lock_t;

typedef enum {
	WRITER_LOCK_ACQUIRED,
	WRITER_LOCK_LOST,
} writer_lock_event_t;

/*! \brief Runs on the loop when the lock is taken or lost. */
typedef void (*writer_lock_cb)(writer_lock_event_t ev, void *arg);

/*! \brief Start contending for the lock of this site database. */
int writer_lock_start(struct event_base *base, const char *conninfo,
                      writer_lock_cb cb, void *arg, writer_lock_t **out)
	__attribute__((warn_unused_result));

/*! \brief Release (closing the session frees the lock) and stop. */
void writer_lock_free(writer_lock_t *l);
