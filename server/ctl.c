/*
 * Control socket of sitesyncd (see ctl.h for the protocol).
 *
 * Life of a connection:
 *
 *   accept ──► READING ──line──► dispatch ──► WAITING ──reply──► WRITING
 *                 │                 │  (handler may answer at once)    │
 *                 │ timeout/error   │ malformed / unknown / too big     │ drained
 *                 ▼                 ▼                                   ▼
 *              conn_close() ◄── error reply ─► WRITING ──────────► conn_close()
 *
 * conn_close() is the only exit path. It detaches a pending request
 * (req->conn = NULL) instead of freeing it: the handler still owns the
 * request and frees it by answering, so a late answer never touches freed
 * memory. Freeing the bufferevent from inside its own callback is safe in
 * libevent 2.1 without deferred callbacks: it clears the callbacks first.
 */
#include "server/ctl.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/listener.h>

#include "common/errcode.h"
#include "common/log.h"
#include "net/conn.h"

typedef struct ctl_conn ctl_conn_t;

typedef enum {
	SS_CTL_READING = 0,  /* waiting for the request line */
	SS_CTL_WAITING,      /* handler owns the request */
	SS_CTL_WRITING,      /* reply queued, close when drained */
} ctl_conn_state_t;

typedef struct {
	char *name;
	ctl_handler_cb fn;
	void *arg;
} ctl_cmd_t;

struct ctl_req {
	ctl_conn_t *conn;    /* NULL once the client is gone */
	char *cmd;
};

struct ctl_conn {
	ctl_t *ctl;
	struct bufferevent *bev;
	ctl_conn_state_t state;
	ctl_req_t *req;      /* set while WAITING */
	ctl_conn_t *prev, *next;
};

struct ctl {
	struct event_base *base;
	char *path;
	struct evconnlistener *lev;
	conn_listen_guard_t *guard;  /* pauses accepting when out of descriptors */
	ctl_cmd_t *cmds;
	size_t ncmds;
	unsigned timeout_ms;
	unsigned nconns;
	ctl_conn_t *conns;   /* doubly linked, for ctl_free() */
};

static void ctl_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                          struct sockaddr *sa, int salen, void *arg);
static void ctl_read_cb(struct bufferevent *bev, void *arg);
static void ctl_write_cb(struct bufferevent *bev, void *arg);
static void ctl_event_cb(struct bufferevent *bev, short what, void *arg);
static void ctl_conn_close(ctl_conn_t *conn);
static void ctl_conn_send(ctl_conn_t *conn, json_t *msg);
static void ctl_conn_error(ctl_conn_t *conn, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
static void ctl_dispatch(ctl_conn_t *conn, const char *line, size_t len);

static const char *const ctl_state_names[] = {
	[SS_CTL_READING] = "reading",
	[SS_CTL_WAITING] = "waiting",
	[SS_CTL_WRITING] = "writing",
};

static void ctl_conn_set_state(ctl_conn_t *conn, ctl_conn_state_t state)
{
	log_debug("control: client %p %s -> %s", (void *)conn,
	          ctl_state_names[conn->state], ctl_state_names[state]);
	conn->state = state;
}

/* mkdir -p for the socket's directory; only missing parts get 0750. */
static int ctl_mkdirs(const char *path, char *err, size_t errlen)
{
	char *dir = strdup(path);
	int ret = SS_EOK;
	if (dir == NULL)
		return SS_ENOMEM;
	char *slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		goto out;
	*slash = '\0';
	for (char *p = dir + 1; ; p++) {
		if (*p != '/' && *p != '\0')
			continue;
		char saved = *p;
		*p = '\0';
		if (mkdir(dir, 0750) != 0 && errno != EEXIST) {
			ret = -errno;
			snprintf(err, errlen, "cannot create directory %s: %s",
			         dir, strerror(errno));
			goto out;
		}
		*p = saved;
		if (saved == '\0')
			break;
	}
out:
	free(dir);
	return ret;
}

/*
 * A socket file left behind by a crashed daemon would make bind() fail, but
 * removing the socket of a live daemon would cut its operators off: probe
 * it first.
 */
static int ctl_clear_stale(const struct sockaddr_un *sun, char *err,
                           size_t errlen)
{
	struct stat st;
	if (lstat(sun->sun_path, &st) != 0) {
		if (errno == ENOENT)
			return SS_EOK;
		snprintf(err, errlen, "cannot stat %s: %s", sun->sun_path,
		         strerror(errno));
		return -errno;
	}
	if (!S_ISSOCK(st.st_mode)) {
		snprintf(err, errlen, "%s exists and is not a socket",
		         sun->sun_path);
		return SS_EEXIST;
	}
	int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		snprintf(err, errlen, "socket: %s", strerror(errno));
		return -errno;
	}
	int rc = connect(fd, (const struct sockaddr *)sun, sizeof(*sun));
	int saved = errno;
	close(fd);
	if (rc == 0) {
		snprintf(err, errlen, "another sitesyncd answers on %s",
		         sun->sun_path);
		return SS_EBUSY;
	}
	if (saved != ECONNREFUSED) {
		snprintf(err, errlen, "cannot probe %s: %s", sun->sun_path,
		         strerror(saved));
		return -saved;
	}
	if (unlink(sun->sun_path) != 0 && errno != ENOENT) {
		snprintf(err, errlen, "cannot remove stale %s: %s",
		         sun->sun_path, strerror(errno));
		return -errno;
	}
	return SS_EOK;
}

int ctl_start(struct event_base *base, const char *path, ctl_t **out,
              char *err, size_t errlen)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	ctl_t *c = NULL;
	int fd = -1;
	bool bound = false;
	int ret;

	if (base == NULL || path == NULL || *path == '\0' || out == NULL) {
		snprintf(err, errlen, "no control socket path");
		return SS_EINVAL;
	}
	if (strlen(path) >= sizeof(sun.sun_path)) {
		snprintf(err, errlen, "control socket path too long: %s", path);
		return SS_EINVAL;
	}
	memcpy(sun.sun_path, path, strlen(path) + 1);

	c = calloc(1, sizeof(*c));
	if (c == NULL || (c->path = strdup(path)) == NULL) {
		ret = SS_ENOMEM;
		snprintf(err, errlen, "%s", ss_strerror(ret));
		goto fail;
	}
	c->base = base;
	c->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;

	ret = ctl_mkdirs(path, err, errlen);
	if (ret != SS_EOK)
		goto fail;
	ret = ctl_clear_stale(&sun, err, errlen);
	if (ret != SS_EOK)
		goto fail;

	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0) {
		ret = -errno;
		snprintf(err, errlen, "socket: %s", strerror(errno));
		goto fail;
	}
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) != 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot bind %s: %s", path, strerror(errno));
		goto fail;
	}
	bound = true;
	/* The directory is 0750, so the short window before chmod is closed
	 * to others; group members (operators) get read-write. */
	if (chmod(path, 0660) != 0) {
		ret = -errno;
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		goto fail;
	}
	c->lev = evconnlistener_new(base, ctl_accept_cb, c,
	                            LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC,
	                            16, fd);
	if (c->lev == NULL) {
		ret = SS_ENOMEM;
		snprintf(err, errlen, "cannot listen on %s", path);
		goto fail;
	}
	c->guard = conn_listen_guard_new(base, c->lev, "control socket");
	*out = c;
	return SS_EOK;
fail:
	if (fd >= 0)
		close(fd);
	if (bound)
		unlink(path);
	if (c != NULL)
		free(c->path);
	free(c);
	return ret;
}

int ctl_register(ctl_t *c, const char *cmd, ctl_handler_cb fn, void *arg)
{
	if (c == NULL || cmd == NULL || fn == NULL)
		return SS_EINVAL;
	for (size_t i = 0; i < c->ncmds; i++)
		if (strcmp(c->cmds[i].name, cmd) == 0)
			return SS_EEXIST;
	ctl_cmd_t *cmds = realloc(c->cmds, (c->ncmds + 1) * sizeof(*cmds));
	if (cmds == NULL)
		return SS_ENOMEM;
	c->cmds = cmds;
	char *name = strdup(cmd);
	if (name == NULL)
		return SS_ENOMEM;
	c->cmds[c->ncmds++] = (ctl_cmd_t){ .name = name, .fn = fn, .arg = arg };
	return SS_EOK;
}

void ctl_set_timeout(ctl_t *c, unsigned ms)
{
	c->timeout_ms = ms ? ms : CTL_DEFAULT_TIMEOUT_MS;
}

unsigned ctl_conn_count(const ctl_t *c)
{
	return c ? c->nconns : 0;
}

static void ctl_accept_cb(struct evconnlistener *lev, evutil_socket_t fd,
                          struct sockaddr *sa, int salen, void *arg)
{
	ctl_t *c = arg;
	ctl_conn_t *conn = calloc(1, sizeof(*conn));
	if (conn == NULL) {
		log_warning("control: out of memory, dropping a client");
		close(fd);
		return;
	}
	conn->ctl = c;
	conn->bev = bufferevent_socket_new(c->base, fd, BEV_OPT_CLOSE_ON_FREE);
	if (conn->bev == NULL) {
		log_warning("control: cannot set up a client connection");
		close(fd);
		free(conn);
		return;
	}
	conn->next = c->conns;
	if (c->conns)
		c->conns->prev = conn;
	c->conns = conn;
	c->nconns++;

	struct timeval tv = {
		.tv_sec = c->timeout_ms / 1000,
		.tv_usec = (c->timeout_ms % 1000) * 1000,
	};
	/* The read timeout closes idle clients; the write timeout one that
	 * never reads its reply. Neither runs while a handler works, because
	 * reading is disabled then. */
	bufferevent_set_timeouts(conn->bev, &tv, &tv);
	/* Stop buffering once a line cannot fit anyway. */
	bufferevent_setwatermark(conn->bev, EV_READ, 0, CTL_MAX_REQUEST + 2);
	bufferevent_setcb(conn->bev, ctl_read_cb, NULL, ctl_event_cb, conn);
	bufferevent_enable(conn->bev, EV_READ);
}

/* The single exit path of a connection. */
static void ctl_conn_close(ctl_conn_t *conn)
{
	ctl_t *c = conn->ctl;
	if (conn->req != NULL) {
		/* The handler still owns it; its answer will be dropped. */
		conn->req->conn = NULL;
		conn->req = NULL;
	}
	bufferevent_free(conn->bev);
	if (conn->prev)
		conn->prev->next = conn->next;
	else
		c->conns = conn->next;
	if (conn->next)
		conn->next->prev = conn->prev;
	c->nconns--;
	free(conn);
}

/* Queue one reply line; the connection closes once it is written. */
static void ctl_conn_send(ctl_conn_t *conn, json_t *msg)
{
	char *text = msg ? json_dumps(msg, JSON_COMPACT) : NULL;
	json_decref(msg);
	bufferevent_disable(conn->bev, EV_READ);
	ctl_conn_set_state(conn, SS_CTL_WRITING);
	if (text == NULL ||
	    bufferevent_write(conn->bev, text, strlen(text)) != 0 ||
	    bufferevent_write(conn->bev, "\n", 1) != 0) {
		free(text);
		log_warning("control: cannot queue a reply");
		ctl_conn_close(conn);
		return;
	}
	free(text);
	bufferevent_setcb(conn->bev, NULL, ctl_write_cb, ctl_event_cb, conn);
	bufferevent_enable(conn->bev, EV_WRITE);
}

static json_t *ctl_error_msg(int code, const char *fmt, va_list ap)
{
	char msg[1024];
	vsnprintf(msg, sizeof(msg), fmt, ap);
	if (code >= 0)
		code = SS_EINVAL;
	return json_pack("{s:b, s:i, s:s}", "ok", 0, "code", code, "error", msg);
}

static void ctl_conn_error(ctl_conn_t *conn, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *msg = ctl_error_msg(code, fmt, ap);
	va_end(ap);
	ctl_conn_send(conn, msg);
}

static void ctl_dispatch(ctl_conn_t *conn, const char *line, size_t len)
{
	ctl_t *c = conn->ctl;
	json_error_t jerr;
	json_t *root = json_loadb(line, len, JSON_REJECT_DUPLICATES, &jerr);
	json_t *args = NULL;

	if (root == NULL) {
		ctl_conn_error(conn, SS_EMALF, "malformed request: %s (column %d)",
		               jerr.text, jerr.column);
		return;
	}
	const char *cmd = json_string_value(json_object_get(root, "cmd"));
	if (!json_is_object(root) || cmd == NULL) {
		ctl_conn_error(conn, SS_EMALF,
		               "malformed request: expected {\"cmd\": NAME, \"args\": {...}}");
		goto out;
	}
	args = json_object_get(root, "args");
	if (args == NULL || json_is_null(args)) {
		args = json_object();
	} else if (json_is_object(args)) {
		json_incref(args);
	} else {
		args = NULL;  /* borrowed from root, not ours to release */
		ctl_conn_error(conn, SS_EMALF, "malformed request: \"args\" must be an object");
		goto out;
	}

	const ctl_cmd_t *entry = NULL;
	for (size_t i = 0; i < c->ncmds; i++) {
		if (strcmp(c->cmds[i].name, cmd) == 0) {
			entry = &c->cmds[i];
			break;
		}
	}
	if (entry == NULL) {
		ctl_conn_error(conn, SS_EINVAL, "unknown command '%s'", cmd);
		goto out;
	}
	ctl_req_t *req = calloc(1, sizeof(*req));
	if (req == NULL || args == NULL || (req->cmd = strdup(cmd)) == NULL) {
		free(req);
		ctl_conn_error(conn, SS_ENOMEM, "out of memory");
		goto out;
	}
	req->conn = conn;
	conn->req = req;
	ctl_conn_set_state(conn, SS_CTL_WAITING);
	/* No further input is expected; a handler may take its time. */
	bufferevent_disable(conn->bev, EV_READ);
	log_debug("control: command %s", cmd);
	/* May answer right here: ctl_conn_send() only queues, it never closes
	 * the connection under us except on allocation failure, after which
	 * nothing below touches conn. */
	entry->fn(req, args, entry->arg);
out:
	json_decref(args);
	json_decref(root);
}

static void ctl_read_cb(struct bufferevent *bev, void *arg)
{
	ctl_conn_t *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);
	size_t eol_len = 0;
	struct evbuffer_ptr eol = evbuffer_search_eol(in, NULL, &eol_len,
	                                              EVBUFFER_EOL_LF);

	if (conn->state != SS_CTL_READING)
		return;
	if (eol.pos < 0) {
		if (evbuffer_get_length(in) > CTL_MAX_REQUEST)
			ctl_conn_error(conn, SS_ETOOBIG,
			               "request larger than %d bytes", CTL_MAX_REQUEST);
		return;
	}
	if ((size_t)eol.pos > CTL_MAX_REQUEST) {
		ctl_conn_error(conn, SS_ETOOBIG, "request larger than %d bytes",
		               CTL_MAX_REQUEST);
		return;
	}
	size_t len = (size_t)eol.pos;
	const char *line = (const char *)evbuffer_pullup(in, (ssize_t)len);
	if (line == NULL && len > 0) {
		ctl_conn_error(conn, SS_ENOMEM, "out of memory");
		return;
	}
	ctl_dispatch(conn, line ? line : "", len);
}

static void ctl_write_cb(struct bufferevent *bev, void *arg)
{
	ctl_conn_t *conn = arg;
	if (evbuffer_get_length(bufferevent_get_output(bev)) == 0)
		ctl_conn_close(conn);
}

static void ctl_event_cb(struct bufferevent *bev, short what, void *arg)
{
	ctl_conn_t *conn = arg;
	struct evbuffer *in = bufferevent_get_input(bev);

	/* A client that half-closes after its request (nc, socat) ends the
	 * line with EOF instead of a newline: take it as the request. */
	if ((what & BEV_EVENT_EOF) && (what & BEV_EVENT_READING) &&
	    conn->state == SS_CTL_READING && evbuffer_get_length(in) > 0) {
		size_t len = evbuffer_get_length(in);
		if (len > CTL_MAX_REQUEST) {
			ctl_conn_error(conn, SS_ETOOBIG,
			               "request larger than %d bytes", CTL_MAX_REQUEST);
			return;
		}
		const char *line = (const char *)evbuffer_pullup(in, -1);
		if (line == NULL) {
			ctl_conn_close(conn);
			return;
		}
		ctl_dispatch(conn, line, len);
		return;
	}
	if (what & BEV_EVENT_TIMEOUT)
		log_debug("control: closing an idle client");
	else if (what & BEV_EVENT_ERROR)
		log_debug("control: client error: %s",
		          evutil_socket_error_to_string(EVUTIL_SOCKET_ERROR()));
	ctl_conn_close(conn);
}

static void ctl_req_finish(ctl_req_t *req, json_t *msg)
{
	ctl_conn_t *conn = req->conn;
	if (conn != NULL) {
		conn->req = NULL;
		ctl_conn_send(conn, msg);
	} else {
		log_debug("control: client left before the reply to %s", req->cmd);
		json_decref(msg);
	}
	free(req->cmd);
	free(req);
}

void ctl_reply(ctl_req_t *req, json_t *data)
{
	if (data == NULL)
		data = json_object();
	json_t *msg = json_object();
	if (msg != NULL) {
		json_object_set_new(msg, "ok", json_true());
		json_object_set_new(msg, "data", data);
	} else {
		json_decref(data);
	}
	ctl_req_finish(req, msg);
}

void ctl_reply_error(ctl_req_t *req, int code, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	json_t *msg = ctl_error_msg(code, fmt, ap);
	va_end(ap);
	ctl_req_finish(req, msg);
}

const char *ctl_req_cmd(const ctl_req_t *req)
{
	return req->cmd;
}

void ctl_free(ctl_t *c)
{
	if (c == NULL)
		return;
	evconnlistener_free(c->lev);
	conn_listen_guard_free(c->guard);
	while (c->conns != NULL)
		ctl_conn_close(c->conns);
	unlink(c->path);
	for (size_t i = 0; i < c->ncmds; i++)
		free(c->cmds[i].name);
	free(c->cmds);
	free(c->path);
	free(c);
}
