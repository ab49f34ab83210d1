/*
 * One TLS connection: socket + bufferevent + SSL + frame reader. Delivers
 * a small event enum to its owner's single callback. Connections free
 * themselves (deferred, never under libevent's feet): after CONN_EV_DOWN
 * or conn_close() the owner must drop its pointer.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <event2/event.h>
#include <openssl/ssl.h>

#include "proto/frame.h"
#include "common/log.h"

struct evdns_base;

typedef struct conn conn_t;

typedef enum {
	CONN_EV_UP,      /* handshake done, peer verified; conn_peer_site() valid */
	CONN_EV_FRAME,   /* one decoded frame (valid during the callback only) */
	CONN_EV_DRAIN,   /* output fell below the drain mark asked for */
	CONN_EV_DOWN,    /* closed by the peer or by an error; conn is gone */
} conn_event_t;

typedef void (*conn_event_cb)(conn_t *c, conn_event_t ev, const frame_t *f,
                              void *arg);

/*! \brief Wrap an accepted socket; the TLS handshake starts at once. */
conn_t *conn_accept(struct event_base *base, SSL_CTX *ctx, evutil_socket_t fd,
                    const struct sockaddr *sa, int salen);

/*!
 * \brief Split "host:port" or "[v6]:port".
 * \return SS_EOK, or SS_EINVAL when it is not of that form.
 */
int conn_split_hostport(const char *hostport, char *host, size_t hostlen, int *port);

/*! \brief Dial "host:port" (numeric or name) with TLS. */
int conn_connect(struct event_base *base, struct evdns_base *dns, SSL_CTX *ctx,
                 const char *hostport, conn_t **out)
	__attribute__((warn_unused_result));

void conn_set_cb(conn_t *c, conn_event_cb cb, void *arg);

/*! \brief Largest frame body accepted from now on. */
void conn_set_limit(conn_t *c, size_t limit);

/*! \brief Close when nothing arrives for \a seconds (0 = never). */
void conn_set_idle_timeout(conn_t *c, int seconds);

/*! \brief Queue one frame. */
int conn_send(conn_t *c, const frame_t *f);

/*!
 * \brief Queue bytes that are already framed (a spooled pull stream)
 * without copying them: the connection owns \a data from now on, even on
 * failure, and frees it once it is sent (or the connection goes).
 * \return SS_EOK, or SS_ENOMEM.
 */
int conn_send_owned(conn_t *c, void *data, size_t len);

/*!
 * \brief The raw bytes (header + body) of the frame being delivered; valid
 * only inside a CONN_EV_FRAME callback.
 */
const uint8_t *conn_frame_raw(const conn_t *c, size_t *len);

/*! \brief Bytes queued for sending. */
size_t conn_pending_out(const conn_t *c);

/*! \brief Ask for one CONN_EV_DRAIN when queued output <= \a low bytes. */
void conn_want_drain(conn_t *c, size_t low);

/*!
 * \brief Close from the owner's side: if \a code is non-zero an Error frame
 * carrying it and the message is sent first. No further callbacks.
 */
void conn_close(conn_t *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*!
 * \brief Close the connection \a seconds from now unless cleared first
 * (0 clears). An absolute deadline: bytes arriving do not extend it, so a
 * peer sending its handshake one byte at a time is closed all the same.
 * \return SS_EOK or SS_ENOMEM.
 */
int conn_set_deadline(conn_t *c, int seconds);

/*! \brief Lines about unauthenticated peers: at most one per \a seconds. */
void conn_set_quiet(int seconds);

/* Seconds a listener stays paused after accept() failed (EMFILE...). */
#define CONN_ACCEPT_PAUSE 1

struct evconnlistener;
typedef struct conn_listen_guard conn_listen_guard_t;

/*!
 * \brief Pause \a lev for CONN_ACCEPT_PAUSE s whenever accept() fails
 * (out of file descriptors: the socket stays readable, so an enabled
 * listener would spin), with one rate-limited log line naming \a what.
 * Replaces the listener's error callback.
 * \return the guard (free after the listener), or NULL.
 */
conn_listen_guard_t *conn_listen_guard_new(struct event_base *base, struct evconnlistener *lev,
                                           const char *what);
void conn_listen_guard_free(conn_listen_guard_t *g);

/*! \brief Stop accepting while \a hold (a connection cap is reached). */
void conn_listen_guard_hold(conn_listen_guard_t *g, bool hold);

/*! \brief Count this connection in *live until it is freed (shutdown waits on it). */
void conn_track(conn_t *c, int *live);

const char *conn_peer_site(const conn_t *c);
const char *conn_peer_addr(const conn_t *c);
uint64_t conn_bytes_in(const conn_t *c);
uint64_t conn_bytes_out(const conn_t *c);
