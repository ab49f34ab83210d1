/*
 * A parent's session with one child site.
 *
 *   accept ──TLS──> WAIT_HELLO ──Hello──> READY ──PullRequest──> WAIT_SPOOL
 *                                          ^   │ all slots busy         │ stream ready
 *                                          │   └──> QUEUED ─slot free─┘ v
 *                                          └──── end of stream ──── STREAMING
 *
 * Each child has its own state and buffers: a slow or dead child delays
 * nobody else. Ping, Pong and StatusReport are valid in every state after
 * Hello; anything else out of place closes the session with an Error.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "net/conn.h"

struct site;
struct spool;

typedef enum {
	CL_WAIT_HELLO,
	CL_READY,
	CL_QUEUED,                  /* pull waits for a free slot (admission) */
	CL_WAIT_SPOOL,
	CL_STREAMING,
} child_state_t;

typedef struct child_link {
	struct child_link *next;
	struct site *d;
	conn_t *conn;
	char site[4];
	child_state_t state;
	uint32_t proto;
	uint64_t version;           /* version the child holds, as last told */
	struct spool *spool;
	FILE *stream;
	uint64_t offset;
	time_t connected_at;
	time_t last_seen;
	uint64_t id;                /* finds the session again after a database check */
	uint64_t queued_seq;        /* order among queued pulls */
	struct event *rate_ev;      /* refills the send budget of a limited link */
	uint64_t rate_debt;         /* stream bytes sent beyond the rate budget */
	uint8_t *fbuf;              /* one spooled frame being read; handed to conn */
	size_t fcap;
	uint64_t queued_have;       /* the queued PullRequest */
	bool queued_full;
	uint64_t resume_to;         /* the child holds this stream up to resume_offset */
	uint64_t resume_offset;
	bool following;             /* waits for more of a stream being produced */
	bool checking;              /* approval being checked in the database */
	bool hello_held;            /* Hello arrived during the check: kept here */
	uint32_t held_proto;
	char held_site[8];
	uint64_t held_version;
	uint8_t held_hierarchy[32];
	size_t held_hierarchy_len;
	char host[64];              /* peer address without the port */
} child_link_t;

/*!
 * \brief Take an accepted TLS connection; the site is checked once
 * verified. It must complete Hello within [listen] handshake_timeout.
 * \param host  The peer's address without the port (for the per-address cap).
 */
void child_link_accept(struct site *d, conn_t *c, const char *host);

/*!
 * \brief Connections that have not completed Hello yet.
 * \param same  Output: how many of them come from \a host.
 */
int child_link_pending(struct site *d, const char *host, int *same);

/*! \brief Is \a site connected and past Hello? */
bool child_link_connected(struct site *d, const char *site);

/*! \brief Send SyncRequest for the current version to every ready child. */
void child_link_notify_all(struct site *d, bool full);

/*! \brief Close the session of \a site (no longer approved). */
void child_link_drop(struct site *d, const char *site, const char *why);

/*! \brief Close every session (shutdown). */
void child_link_free_all(struct site *d);

/*! \brief Number of connected children. */
int child_link_count(struct site *d);
