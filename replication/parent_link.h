/*
 * A child's session toward its parent.
 *
 *   IDLE ──timer──> CONNECTING ──TLS──> HELLO ──Hello──> READY
 *    ^  (backoff + jitter)                                 │ parent newer
 *    │                                                     v
 *    └──────────── connection lost ──────────── PULLING ──PullDone──> APPLYING
 *                                                                       │ job done
 *                                               READY <─────────────────┘
 *
 * The pull is written to a local stream file, then applied by a database
 * worker in one transaction. Ping every heartbeat carries our version and
 * the Pong carries the parent's: that is the poll that catches a lost
 * SyncRequest.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include "proto/sitesync.pb-c.h"

struct site;

typedef struct parent_link parent_link_t;

/*! \brief Create the link and dial at once. */
int parent_link_start(struct site *d, parent_link_t **out)
	__attribute__((warn_unused_result));

/*! \brief Shutdown step one: close the connection, stop timers. */
void parent_link_close(parent_link_t *p);

/*! \brief Free, once no database job refers to the link any more. */
void parent_link_free(parent_link_t *p);

/*! \brief Send our StatusReport now if the link is up. */
void parent_link_report(parent_link_t *p);

/*! \brief Ask for a full snapshot on the next pull (repair). */
void parent_link_want_full(parent_link_t *p);

/*! \brief Pull now if the parent is ahead (or a full pull is wanted). */
void parent_link_kick(parent_link_t *p);

const char *parent_link_site(const parent_link_t *p);
uint64_t parent_link_version(const parent_link_t *p);
Sitesync__LinkState parent_link_state(const parent_link_t *p);
time_t parent_link_last_seen(const parent_link_t *p);
bool parent_link_busy(const parent_link_t *p);

/*!
 * \brief An operator's `sitesync sync` at this child: pull from the parent
 * now (a full snapshot with \a full), past any retry back-off.
 * \return SS_EOK pull started, SS_EEXIST already at the parent's version,
 *         SS_EBUSY a pull or import is running, SS_EAGAIN not connected.
 */
int parent_link_pull_now(parent_link_t *p, bool full);

/*!
 * \brief Parent's digest at its version, when known from the last Pong.
 * \return true when known.
 */
bool parent_link_digest(const parent_link_t *p, uint64_t *version, uint8_t digest[32]);
