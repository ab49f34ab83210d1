/* TLS connections over libevent bufferevents, with length-prefixed frames. */
#include "net/conn.h"

#include <errno.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/dns.h>
#include <event2/listener.h>
#include <openssl/err.h>

#include "common/errcode.h"
#include "common/log.h"
#include "net/tls.h"

struct conn {
	struct event_base *base;
	struct bufferevent *bev;
	SSL *ssl;
	conn_event_cb cb;
	void *arg;
	size_t limit;
	size_t drain_low;
	bool want_drain;
	bool up;
	bool closing;            /* no more callbacks to the owner */
	struct event *linger;    /* bounds the wait for a final flush */
	struct event *deadline;  /* absolute: until the owner says the peer is in */
	int *live;               /* owner's count of live connections */
	uint64_t bytes_in;
	uint64_t bytes_out;
	const uint8_t *raw;      /* frame being delivered: header + body */
	size_t raw_len;
	char peer_site[4];
	char peer_addr[64];
};

static void conn_read_cb(struct bufferevent *bev, void *arg);
static void conn_write_cb(struct bufferevent *bev, void *arg);
static void conn_event_bev_cb(struct bufferevent *bev, short what, void *arg);
static void conn_trim_later(struct event_base *base);

/* Lines about peers that have not authenticated are rate-limited: a
 * flood of them must not become a flood of log lines. Event loop only. */
static int conn_quiet_seconds = 60;
static log_rate_t conn_preauth_rate;

/* Freed-connection memory goes back to the system after a burst. */
static unsigned conn_freed;
static bool conn_trim_scheduled;
#define CONN_TRIM_AFTER 32      /* connections freed before a trim is worth it */

static void conn_stop_deadline(conn_t *c)
{
	if (c->deadline) {
		event_free(c->deadline);
		c->deadline = NULL;
	}
}

static void conn_destroy(conn_t *c)
{
	if (c->live)
		(*c->live)--;
	conn_stop_deadline(c);
	if (++conn_freed >= CONN_TRIM_AFTER)
		conn_trim_later(c->base);
	if (c->linger)
		event_free(c->linger);
	if (c->bev) {
		/* Send close_notify so the peer sees an orderly end. */
		if (c->ssl && c->up)
			SSL_shutdown(c->ssl);
		bufferevent_free(c->bev);   /* frees the SSL (BEV_OPT_CLOSE_ON_FREE) */
	}
	free(c);
}

static void conn_destroy_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_destroy(arg);
}

/* Free on a later loop turn: we may be inside one of the bev's callbacks. */
static void conn_destroy_later(conn_t *c)
{
	bufferevent_disable(c->bev, EV_READ | EV_WRITE);
	bufferevent_setcb(c->bev, NULL, NULL, NULL, NULL);
	conn_stop_deadline(c);
	if (c->linger) {
		event_free(c->linger);
		c->linger = NULL;
	}
	struct timeval now = { 0, 0 };
	if (event_base_once(c->base, -1, EV_TIMEOUT, conn_destroy_cb, c, &now) != 0)
		conn_destroy(c);    /* cannot defer: free now, nothing else will */
}

static void conn_linger_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_destroy_later(arg);
}

static void conn_flush_then_destroy(conn_t *c)
{
	conn_stop_deadline(c);
	if (!c->up || evbuffer_get_length(bufferevent_get_output(c->bev)) == 0) {
		conn_destroy_later(c);
		return;
	}
	bufferevent_disable(c->bev, EV_READ);
	bufferevent_setwatermark(c->bev, EV_WRITE, 0, 0);
	bufferevent_setcb(c->bev, NULL, conn_write_cb, conn_event_bev_cb, c);
	c->linger = evtimer_new(c->base, conn_linger_cb, c);
	struct timeval tv = { 2, 0 };
	if (c->linger == NULL || evtimer_add(c->linger, &tv) != 0)
		conn_destroy_later(c);
}

static void conn_report_down(conn_t *c)
{
	if (c->closing)
		return;
	c->closing = true;
	if (c->cb)
		c->cb(c, CONN_EV_DOWN, NULL, c->arg);
}

static void conn_send_error(conn_t *c, int code, const char *msg)
{
	Sitesync__Error e = SITESYNC__ERROR__INIT;
	e.code = code;
	e.message = (char *)msg;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_ERROR;
	f.error = &e;
	(void)conn_send(c, &f);
}

/* A line about a peer: always once it is authenticated, rate-limited
 * before (anyone can open connections). */
static void conn_log(const conn_t *c, ss_log_level_t lvl, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void conn_log(const conn_t *c, ss_log_level_t lvl, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->up && c->peer_site[0]) {
		log_msg(lvl, "%s", msg);
		return;
	}
	unsigned long skipped = 0;
	if (!log_rate_allow(&conn_preauth_rate, conn_quiet_seconds, &skipped))
		return;
	if (skipped)
		log_msg(lvl, "%s (and %lu more such events from unauthenticated peers since the last "
		        "line)", msg, skipped);
	else
		log_msg(lvl, "%s", msg);
}

/* A protocol violation by the peer: tell it, tell the owner, go. */
static void conn_fail(conn_t *c, int code, const char *msg)
{
	conn_log(c, SS_LOG_WARNING, "closing connection from %s%s%s: %s", c->peer_addr,
	         c->peer_site[0] ? " site " : "", c->peer_site, msg);
	if (c->up)
		conn_send_error(c, code, msg);
	conn_report_down(c);
	conn_flush_then_destroy(c);
}

static void conn_read_cb(struct bufferevent *bev, void *arg)
{
	conn_t *c = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	while (!c->closing) {
		size_t avail = evbuffer_get_length(in);
		uint8_t hdr[SS_FRAME_HDR];
		if (avail < SS_FRAME_HDR)
			return;
		evbuffer_copyout(in, hdr, sizeof(hdr));
		uint32_t body = 0;
		int ret = frame_header_parse(hdr, sizeof(hdr), c->limit, &body);
		if (ret == SS_ETOOBIG) {
			char msg[128];
			uint32_t n = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 |
			             (uint32_t)hdr[2] << 8 | hdr[3];
			snprintf(msg, sizeof(msg), "frame of %u bytes exceeds the limit of %zu",
			         n, c->limit);
			conn_fail(c, SS_ETOOBIG, msg);
			return;
		}
		if (ret != SS_EOK) {
			conn_fail(c, SS_EMALF, "empty frame");
			return;
		}
		if (avail < SS_FRAME_HDR + (size_t)body)
			return;
		/* Header and body together, so the owner can store the frame verbatim. */
		const uint8_t *p = evbuffer_pullup(in, SS_FRAME_HDR + (ev_ssize_t)body);
		frame_t *f = NULL;
		ret = p ? frame_decode(p + SS_FRAME_HDR, body, &f) : SS_ENOMEM;
		if (ret != SS_EOK) {
			evbuffer_drain(in, SS_FRAME_HDR + body);
			conn_fail(c, SS_EMALF, "undecodable frame");
			return;
		}
		c->bytes_in += SS_FRAME_HDR + body;
		c->raw = p;
		c->raw_len = SS_FRAME_HDR + body;
		if (c->cb)
			c->cb(c, CONN_EV_FRAME, f, c->arg);
		c->raw = NULL;
		c->raw_len = 0;
		frame_free(f);
		evbuffer_drain(in, SS_FRAME_HDR + body);
	}
}

static void conn_write_cb(struct bufferevent *bev, void *arg)
{
	conn_t *c = arg;
	size_t left = evbuffer_get_length(bufferevent_get_output(bev));
	if (c->closing) {
		if (left == 0)
			conn_destroy_later(c);
		return;
	}
	if (c->want_drain && left <= c->drain_low) {
		c->want_drain = false;
		if (c->cb)
			c->cb(c, CONN_EV_DRAIN, NULL, c->arg);
	}
}

static void conn_event_bev_cb(struct bufferevent *bev, short what, void *arg)
{
	conn_t *c = arg;
	char ebuf[256];
	if (what & BEV_EVENT_CONNECTED) {
		if (tls_peer_site(c->ssl, c->peer_site) != SS_EOK) {
			c->peer_site[0] = '\0';
			conn_log(c, SS_LOG_WARNING, "refusing %s: peer certificate has no site code in its "
			         "common name", c->peer_addr);
			c->up = true;
			conn_send_error(c, SS_EDENIED, "certificate common name is not a site code");
			conn_report_down(c);
			conn_flush_then_destroy(c);
			return;
		}
		c->up = true;
		if (c->cb)
			c->cb(c, CONN_EV_UP, NULL, c->arg);
		return;
	}
	if (c->closing) {
		/* Errors while lingering for a last flush: just finish. */
		conn_destroy_later(c);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		conn_log(c, SS_LOG_WARNING, "connection %s%s%s: no data within the idle timeout",
		         c->peer_addr, c->peer_site[0] ? " site " : "", c->peer_site);
	else if (what & BEV_EVENT_ERROR) {
		int se = EVUTIL_SOCKET_ERROR();
		const char *why = tls_last_error(ebuf, sizeof(ebuf));
		if (strcmp(why, "connection failed") == 0 && se)
			why = evutil_socket_error_to_string(se);
		if (c->up)
			log_info("connection %s site %s lost: %s", c->peer_addr, c->peer_site, why);
		else
			conn_log(c, SS_LOG_WARNING, "TLS handshake with %s failed: %s", c->peer_addr, why);
	} else if (what & BEV_EVENT_EOF)
		conn_log(c, SS_LOG_INFO, "connection %s%s%s closed by peer", c->peer_addr,
		         c->peer_site[0] ? " site " : "", c->peer_site);
	conn_report_down(c);
	conn_destroy_later(c);
}

static conn_t *conn_new(struct event_base *base, SSL_CTX *ctx, evutil_socket_t fd,
                        enum bufferevent_ssl_state state)
{
	conn_t *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->base = base;
	c->limit = SS_FRAME_PREAUTH_LIMIT;
	c->ssl = SSL_new(ctx);
	if (c->ssl == NULL)
		goto fail;
	c->bev = bufferevent_openssl_socket_new(base, fd, c->ssl, state,
	                                        BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (c->bev == NULL)
		goto fail;
	bufferevent_openssl_set_allow_dirty_shutdown(c->bev, 1);
	bufferevent_setcb(c->bev, conn_read_cb, conn_write_cb, conn_event_bev_cb, c);
	bufferevent_enable(c->bev, EV_READ | EV_WRITE);
	/* A handshake that never completes must not hold a slot forever. */
	struct timeval tv = { 15, 0 };
	bufferevent_set_timeouts(c->bev, &tv, NULL);
	return c;
fail:
	if (c->ssl)
		SSL_free(c->ssl);
	if (fd >= 0)
		evutil_closesocket(fd);
	free(c);
	return NULL;
}

conn_t *conn_accept(struct event_base *base, SSL_CTX *ctx, evutil_socket_t fd,
                    const struct sockaddr *sa, int salen)
{
	conn_t *c = conn_new(base, ctx, fd, BUFFEREVENT_SSL_ACCEPTING);
	if (c == NULL)
		return NULL;
	char host[48] = "?";
	int port = 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)sa;
		evutil_inet_ntop(AF_INET, &s4->sin_addr, host, sizeof(host));
		port = ntohs(s4->sin_port);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)sa;
		evutil_inet_ntop(AF_INET6, &s6->sin6_addr, host, sizeof(host));
		port = ntohs(s6->sin6_port);
	}
	(void)salen;
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s:%d", host, port);
	return c;
}

int conn_split_hostport(const char *hostport, char *host, size_t hostlen, int *port)
{
	const char *colon = strrchr(hostport, ':');
	if (colon == NULL || colon == hostport || (size_t)(colon - hostport) >= hostlen)
		return SS_EINVAL;
	char *end = NULL;
	long p = strtol(colon + 1, &end, 10);
	if (end == colon + 1 || *end != '\0' || p <= 0 || p > 65535)
		return SS_EINVAL;
	const char *h = hostport;
	size_t hl = (size_t)(colon - hostport);
	if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') {
		h++;
		hl -= 2;
	}
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (int)p;
	return SS_EOK;
}

int conn_connect(struct event_base *base, struct evdns_base *dns, SSL_CTX *ctx,
                 const char *hostport, conn_t **out)
{
	char host[256];
	int port = 0;
	if (conn_split_hostport(hostport, host, sizeof(host), &port) != SS_EOK)
		return SS_EINVAL;

	conn_t *c = conn_new(base, ctx, -1, BUFFEREVENT_SSL_CONNECTING);
	if (c == NULL)
		return SS_ENOMEM;
	snprintf(c->peer_addr, sizeof(c->peer_addr), "%s", hostport);
	if (bufferevent_socket_connect_hostname(c->bev, dns, AF_UNSPEC, host, port) != 0) {
		conn_destroy(c);
		return SS_ECONNREFUSED;
	}
	*out = c;
	return SS_EOK;
}

void conn_set_cb(conn_t *c, conn_event_cb cb, void *arg)
{
	c->cb = cb;
	c->arg = arg;
}

void conn_set_limit(conn_t *c, size_t limit)
{
	c->limit = limit;
}

void conn_set_idle_timeout(conn_t *c, int seconds)
{
	struct timeval tv = { seconds, 0 };
	bufferevent_set_timeouts(c->bev, seconds > 0 ? &tv : NULL, NULL);
}

int conn_send(conn_t *c, const frame_t *f)
{
	size_t n = frame_encoded_size(f);
	struct evbuffer *out = bufferevent_get_output(c->bev);
	struct evbuffer_iovec v;
	if (evbuffer_reserve_space(out, (ev_ssize_t)n, &v, 1) < 1 || v.iov_len < n)
		return SS_ENOMEM;
	frame_encode_to(f, v.iov_base);
	v.iov_len = n;
	if (evbuffer_commit_space(out, &v, 1) != 0)
		return SS_ENOMEM;
	c->bytes_out += n;
	return SS_EOK;
}

static void conn_owned_free_cb(const void *data, size_t len, void *arg)
{
	free((void *)data);
}

int conn_send_owned(conn_t *c, void *data, size_t len)
{
	/* A reference chain: no second copy of a frame of up to a MiB, and no
	 * power-of-two chain around it; freed once the TLS layer has sent it. */
	if (evbuffer_add_reference(bufferevent_get_output(c->bev), data, len,
	                           conn_owned_free_cb, NULL) != 0) {
		free(data);
		return SS_ENOMEM;
	}
	c->bytes_out += len;
	return SS_EOK;
}

const uint8_t *conn_frame_raw(const conn_t *c, size_t *len)
{
	*len = c->raw_len;
	return c->raw;
}

/* All of it: a socket-based TLS bufferevent encrypts straight into the
 * socket (no underlying bufferevent holds ciphertext). */
size_t conn_pending_out(const conn_t *c)
{
	return evbuffer_get_length(bufferevent_get_output(c->bev));
}

void conn_want_drain(conn_t *c, size_t low)
{
	c->drain_low = low;
	c->want_drain = true;
	bufferevent_setwatermark(c->bev, EV_WRITE, low, 0);
	/* Already below the mark: report on the next loop turn via the write cb. */
	if (conn_pending_out(c) <= low)
		bufferevent_trigger(c->bev, EV_WRITE, BEV_TRIG_IGNORE_WATERMARKS | BEV_TRIG_DEFER_CALLBACKS);
}

void conn_close(conn_t *c, int code, const char *fmt, ...)
{
	if (c == NULL)
		return;
	if (code != 0 && c->up && !c->closing) {
		char msg[256];
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		conn_send_error(c, code, msg);
	}
	c->closing = true;
	conn_flush_then_destroy(c);
}

static void conn_deadline_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_t *c = arg;
	conn_log(c, SS_LOG_WARNING, "closing connection from %s%s%s: not through its handshake "
	         "within the deadline", c->peer_addr, c->peer_site[0] ? " site " : "", c->peer_site);
	conn_report_down(c);
	conn_destroy_later(c);
}

int conn_set_deadline(conn_t *c, int seconds)
{
	if (seconds <= 0) {
		conn_stop_deadline(c);
		return SS_EOK;
	}
	if (c->deadline == NULL)
		c->deadline = evtimer_new(c->base, conn_deadline_cb, c);
	struct timeval tv = { seconds, 0 };
	if (c->deadline == NULL || evtimer_add(c->deadline, &tv) != 0)
		return SS_ENOMEM;
	return SS_EOK;
}

void conn_set_quiet(int seconds)
{
	conn_quiet_seconds = seconds > 0 ? seconds : 1;
}

static void conn_trim_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_trim_scheduled = false;
	conn_freed = 0;
	/* glibc keeps freed heap for reuse; after a flood that is tens of MB
	 * the daemon will not need again. */
	malloc_trim(0);
}

static void conn_trim_later(struct event_base *base)
{
	if (conn_trim_scheduled)
		return;
	/* Once the burst is over, not for each connection of it. */
	struct timeval tv = { 2, 0 };
	if (event_base_once(base, -1, EV_TIMEOUT, conn_trim_cb, NULL, &tv) == 0)
		conn_trim_scheduled = true;
}

struct conn_listen_guard {
	struct evconnlistener *lev;
	struct event *resume;
	log_rate_t rate;
	char what[32];
	bool paused;            /* by an accept error, until the timer */
	bool held;              /* by the owner (a connection cap) */
};

/* A listener's error callback gets the listener's own argument (evhttp's
 * for the HTTP server), so guards are found by listener. */
#define CONN_GUARDS 8
static conn_listen_guard_t *conn_guards[CONN_GUARDS];

static void conn_guard_resume_cb(evutil_socket_t fd, short what, void *arg)
{
	conn_listen_guard_t *g = arg;
	g->paused = false;
	if (!g->held)
		evconnlistener_enable(g->lev);
}

void conn_listen_guard_hold(conn_listen_guard_t *g, bool hold)
{
	g->held = hold;
	if (hold)
		evconnlistener_disable(g->lev);
	else if (!g->paused)
		evconnlistener_enable(g->lev);
}

/* accept() failed for a reason other than a retriable one (EMFILE, ENFILE,
 * ENOBUFS...): the socket stays readable, so an enabled listener would
 * call here again on every loop turn. Pause it instead. */
static void conn_guard_error_cb(struct evconnlistener *lev, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	conn_listen_guard_t *g = NULL;
	for (int i = 0; i < CONN_GUARDS && g == NULL; i++)
		if (conn_guards[i] && conn_guards[i]->lev == lev)
			g = conn_guards[i];
	if (g == NULL)
		return;
	struct timeval tv = { CONN_ACCEPT_PAUSE, 0 };
	evconnlistener_disable(lev);
	g->paused = true;
	if (evtimer_add(g->resume, &tv) != 0) {
		g->paused = false;
		if (!g->held)
			evconnlistener_enable(lev);     /* cannot pause: better spin than go deaf */
	}
	unsigned long skipped = 0;
	if (log_rate_allow(&g->rate, conn_quiet_seconds, &skipped))
		log_error("%s: accepting connections: %s; not accepting for %d s%s%.0lu%s",
		          g->what, evutil_socket_error_to_string(err), CONN_ACCEPT_PAUSE,
		          skipped ? " (" : "", skipped, skipped ? " more such errors since the last line)" : "");
}

conn_listen_guard_t *conn_listen_guard_new(struct event_base *base, struct evconnlistener *lev,
                                           const char *what)
{
	conn_listen_guard_t *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->lev = lev;
	snprintf(g->what, sizeof(g->what), "%s", what);
	g->resume = evtimer_new(base, conn_guard_resume_cb, g);
	int slot = 0;
	while (slot < CONN_GUARDS && conn_guards[slot])
		slot++;
	if (g->resume == NULL || slot == CONN_GUARDS) {
		if (g->resume)
			event_free(g->resume);
		free(g);
		return NULL;
	}
	conn_guards[slot] = g;
	evconnlistener_set_error_cb(lev, conn_guard_error_cb);
	return g;
}

void conn_listen_guard_free(conn_listen_guard_t *g)
{
	if (g == NULL)
		return;
	for (int i = 0; i < CONN_GUARDS; i++)
		if (conn_guards[i] == g)
			conn_guards[i] = NULL;
	event_free(g->resume);
	free(g);
}

void conn_track(conn_t *c, int *live)
{
	c->live = live;
	(*live)++;
}

const char *conn_peer_site(const conn_t *c)
{
	return c->peer_site;
}

const char *conn_peer_addr(const conn_t *c)
{
	return c->peer_addr;
}

uint64_t conn_bytes_in(const conn_t *c)
{
	return c->bytes_in;
}

uint64_t conn_bytes_out(const conn_t *c)
{
	return c->bytes_out;
}
