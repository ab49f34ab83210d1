/* Parent side of a replication link: hello, pull serving, status intake. */
#include "replication/child_link.h"

#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "proto/version.h"
#include "replication/spool.h"
#include "replication/status.h"
#include "replication/site.h"
#include "common/errcode.h"
#include "common/log.h"
#include "storage/db.h"

/* Spooled frames are up to 1 MiB (spool.c batch_bytes) and each is queued
 * whole, so a streaming child holds about one frame plus STREAM_HIGH: with
 * max_concurrent_pulls streams that is the parent's memory for serving.
 * The kernel's socket buffer keeps the link busy while a frame is read. */
#define STREAM_CHUNK (64u * 1024u)    /* drain mark */
#define STREAM_HIGH (256u * 1024u)    /* queue frames while less is pending */

static void child_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg);

#define CL_LOG(lvl, cl, fmt, ...) \
	log_peer(lvl, "child", (cl)->site[0] ? (cl)->site : conn_peer_addr((cl)->conn), fmt, ##__VA_ARGS__)

static void child_unlink(child_link_t *cl)
{
	site_t *d = cl->d;
	for (child_link_t **pp = &d->children; *pp; pp = &(*pp)->next) {
		if (*pp == cl) {
			*pp = cl->next;
			break;
		}
	}
}

static void child_start_pull(child_link_t *cl, uint64_t have, bool full);

/* Start queued pulls while slots are free, oldest first. A stream still
 * produced for a child that left holds a slot too: reconnecting must not
 * start database scans past max_concurrent_pulls. */
static void child_dequeue(site_t *d)
{
	for (;;) {
		int active = spool_producing_unwanted(d);
		child_link_t *next = NULL;
		for (child_link_t *cl = d->children; cl; cl = cl->next) {
			if (cl->state == CL_WAIT_SPOOL || cl->state == CL_STREAMING)
				active++;
			else if (cl->state == CL_QUEUED && (next == NULL || cl->queued_seq < next->queued_seq))
				next = cl;
		}
		if (next == NULL || active >= d->conf->max_pulls)
			return;
		child_start_pull(next, next->queued_have, next->queued_full);
	}
}

/* The one exit path of a child session. */
static void child_disconnect(child_link_t *cl, bool conn_gone, int code, const char *why)
{
	site_t *d = cl->d;
	bool held_slot = cl->state == CL_WAIT_SPOOL || cl->state == CL_STREAMING;
	child_unlink(cl);
	if (cl->stream)
		fclose(cl->stream);
	if (cl->spool)
		spool_put(d, cl->spool);
	if (cl->rate_ev)
		event_free(cl->rate_ev);
	free(cl->fbuf);
	if (!conn_gone)
		conn_close(cl->conn, code, "%s", why);
	if (cl->state != CL_WAIT_HELLO) {
		site_message(d, SS_MSG_CHILD_LOST, "warning", "Child site %s disconnected: %s",
		             cl->site, why);
		/* Replaced by a newer session of the same child: not down. */
		if (code != SS_EBUSY)
			site_child_link(d, cl->site, false);
		site_status_changed(d);   /* tells the parent now, with the link down */
	}
	free(cl);
	if (held_slot)
		child_dequeue(d);
}

static child_link_t *child_find(site_t *d, const char *site)
{
	for (child_link_t *cl = d->children; cl; cl = cl->next)
		if (cl->state != CL_WAIT_HELLO && strcmp(cl->site, site) == 0)
			return cl;
	return NULL;
}

bool child_link_connected(site_t *d, const char *site)
{
	return site && child_find(d, site) != NULL;
}

int child_link_count(site_t *d)
{
	int n = 0;
	for (child_link_t *cl = d->children; cl; cl = cl->next)
		if (cl->state != CL_WAIT_HELLO)
			n++;
	return n;
}

int child_link_pending(site_t *d, const char *host, int *same)
{
	int n = 0;
	*same = 0;
	for (child_link_t *cl = d->children; cl; cl = cl->next) {
		if (cl->state != CL_WAIT_HELLO)
			continue;
		n++;
		if (strcmp(cl->host, host) == 0)
			(*same)++;
	}
	return n;
}

void child_link_accept(site_t *d, conn_t *c, const char *host)
{
	child_link_t *cl = calloc(1, sizeof(*cl));
	if (cl == NULL) {
		conn_close(c, 0, "out of memory");
		return;
	}
	cl->d = d;
	cl->conn = c;
	cl->id = ++d->next_child_id;
	cl->state = CL_WAIT_HELLO;
	cl->connected_at = cl->last_seen = time(NULL);
	snprintf(cl->host, sizeof(cl->host), "%s", host);
	cl->next = d->children;
	d->children = cl;
	conn_set_cb(c, child_cb, cl);
	/* Absolute, unlike the idle timeout: a handshake sent a byte at a
	 * time must not hold a pre-Hello slot for ever. */
	if (conn_set_deadline(c, d->conf->handshake_timeout) != SS_EOK)
		child_disconnect(cl, false, 0, "out of memory");
}

static int child_send_hello(child_link_t *cl)
{
	site_t *d = cl->d;
	Sitesync__Hello h = SITESYNC__HELLO__INIT;
	/* The version this session speaks: the child's, which is never newer. */
	h.protocol_version = cl->proto;
	h.site = d->conf->site_code;
	h.software_version = SS_SOFTWARE_VERSION;
	h.catalog_version = d->version;
	h.top_version = d->top_version > d->version ? d->top_version : d->version;
	h.hierarchy_id.data = d->hierarchy_id;
	h.hierarchy_id.len = sizeof(d->hierarchy_id);
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_HELLO;
	f.hello = &h;
	return conn_send(cl->conn, &f);
}

static void child_on_hello(child_link_t *cl, const Sitesync__Hello *h);

static void child_refuse_unapproved(child_link_t *cl)
{
	site_t *d = cl->d;
	/* Anyone with a certificate of the CA can repeat this at will: one
	 * warning and one history row per site per window, refusals counted. */
	unsigned long skipped = 0;
	if (site_refusal_allow(d, cl->site, &skipped)) {
		log_warning("refusing site %s from %s: not an approved child of %s "
		            "(approve it with: sitesync child add %s); %lu more refusals of it "
		            "since the last line", cl->site, conn_peer_addr(cl->conn),
		            d->conf->site_code, cl->site, skipped);
		site_message(d, SS_MSG_CHILD_REFUSED, "warning",
		             "Refused connection from site %s (%s): not an approved child",
		             cl->site, conn_peer_addr(cl->conn));
	}
	site_pending_note(d, cl->site, conn_peer_addr(cl->conn));
	char why[96];
	snprintf(why, sizeof(why), "site %s is not an approved child of %s", cl->site,
	         d->conf->site_code);
	child_disconnect(cl, false, SS_EDENIED, why);
}

typedef struct {
	site_t *d;
	uint64_t id;
	char site[4];
	bool approved;
} approval_job_t;

static int approval_work(PGconn *conn, void *arg)
{
	approval_job_t *j = arg;
	const char *p[] = { j->site };
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT 1 FROM children WHERE site = $1", 1, p, &r, NULL, 0);
	if (ret == SS_EOK)
		j->approved = PQntuples(r) == 1;
	PQclear(r);
	return ret;
}

static void approval_done(int ret, void *arg)
{
	approval_job_t *j = arg;
	site_t *d = j->d;
	child_link_t *cl = d->children;
	while (cl && cl->id != j->id)
		cl = cl->next;
	if (cl == NULL) {            /* gone meanwhile */
		free(j);
		return;
	}
	cl->checking = false;
	if (ret == SS_EOK && j->approved) {
		/* Approved through another daemon sharing this database. */
		size_t n = d->n_approved;
		char (*more)[4] = calloc(n + 1, sizeof(*more));
		if (more) {
			if (n)
				memcpy(more, d->approved, n * sizeof(*more));
			snprintf(more[n], 4, "%s", j->site);
			site_set_approved(d, more, n + 1);
			free(more);
		}
		conn_set_idle_timeout(cl->conn, d->conf->heartbeat_timeout);
		if (cl->hello_held) {
			Sitesync__Hello h = SITESYNC__HELLO__INIT;
			h.protocol_version = cl->held_proto;
			h.site = cl->held_site;
			h.catalog_version = cl->held_version;
			h.hierarchy_id.data = cl->held_hierarchy;
			h.hierarchy_id.len = cl->held_hierarchy_len;
			cl->hello_held = false;
			child_on_hello(cl, &h);
		}
	} else {
		child_refuse_unapproved(cl);
	}
	free(j);
}

static void child_on_up(child_link_t *cl)
{
	site_t *d = cl->d;
	snprintf(cl->site, sizeof(cl->site), "%s", conn_peer_site(cl->conn));
	if (site_child_approved(d, cl->site)) {
		conn_set_idle_timeout(cl->conn, d->conf->heartbeat_timeout);
		return;
	}
	/* The database is the authority: the list here may be older. */
	approval_job_t *j = calloc(1, sizeof(*j));
	if (j == NULL) {
		child_refuse_unapproved(cl);
		return;
	}
	j->d = d;
	j->id = cl->id;
	snprintf(j->site, sizeof(j->site), "%s", cl->site);
	cl->checking = true;
	if (db_submit(d->db, DB_QUICK, approval_work, approval_done, j) != SS_EOK) {
		free(j);
		cl->checking = false;
		child_refuse_unapproved(cl);
	}
}

static void child_on_hello(child_link_t *cl, const Sitesync__Hello *h)
{
	site_t *d = cl->d;
	char why[160];
	if (h->protocol_version < SS_PROTO_MIN_VERSION || h->protocol_version > SS_PROTO_VERSION) {
		snprintf(why, sizeof(why), "protocol version %u is not served here (%d to %d are)",
		         h->protocol_version, SS_PROTO_MIN_VERSION, SS_PROTO_VERSION);
		CL_LOG(SS_LOG_WARNING, cl, "%s", why);
		child_disconnect(cl, false, SS_EVERSION, why);
		return;
	}
	if (strcmp(h->site, cl->site) != 0) {
		snprintf(why, sizeof(why), "Hello claims site '%.8s' but the certificate says %s",
		         h->site, cl->site);
		CL_LOG(SS_LOG_WARNING, cl, "%s", why);
		child_disconnect(cl, false, SS_EDENIED, why);
		return;
	}
	if (h->hierarchy_id.len && (h->hierarchy_id.len != sizeof(d->hierarchy_id) ||
	    memcmp(h->hierarchy_id.data, d->hierarchy_id, sizeof(d->hierarchy_id)) != 0)) {
		child_disconnect(cl, false, SS_EHIERARCHY, "child belongs to another hierarchy");
		return;
	}
	/* A reconnecting child replaces its older session. */
	child_link_t *old = child_find(d, cl->site);
	if (old)
		child_disconnect(old, false, SS_EBUSY, "replaced by a new connection");
	cl->proto = h->protocol_version;
	cl->version = h->catalog_version;
	cl->state = CL_READY;
	conn_set_deadline(cl->conn, 0);
	conn_set_limit(cl->conn, (size_t)d->conf->max_frame);

	if (child_send_hello(cl) != SS_EOK) {
		child_disconnect(cl, false, SS_ENOMEM, "out of memory");
		return;
	}
	site_message(d, SS_MSG_CHILD_CONNECTED, "info",
	             "Child site %s connected from %s, holds version %" PRIu64,
	             cl->site, conn_peer_addr(cl->conn), cl->version);
	site_child_link(d, cl->site, true);
	site_status_changed(d);
}

static void child_stream_more(child_link_t *cl);

static void child_rate_cb(evutil_socket_t fd, short what, void *arg)
{
	child_link_t *cl = arg;
	/* Each tick pays off a tenth of a second's worth of sent bytes. */
	uint64_t per_tick = (uint64_t)cl->d->conf->rate_limit_kib * 1024 / 10;
	cl->rate_debt = cl->rate_debt > per_tick ? cl->rate_debt - per_tick : 0;
	if (cl->state == CL_STREAMING && cl->stream)
		child_stream_more(cl);
}

/* Serving a stream while it is produced ([replication]
 * serve_while_producing): the producing worker only publishes how many
 * bytes of whole frames are in the file, so a child that has been sent
 * all of them looks again at the next tick of one timer for the whole
 * site. The end of the production starts every follower at once
 * (child_spool_ready), so the tick adds no latency to the last frame. */
#define FOLLOW_TICK_US 2000

static void child_start_stream(child_link_t *cl);

static void child_follow_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	site_t *d = arg;
	child_link_t *cl = d->children;
	while (cl) {
		child_link_t *next = cl->next;    /* cl may go away below */
		if (cl->following) {
			cl->following = false;
			if (cl->state == CL_WAIT_SPOOL && spool_readable(cl->spool) > 0)
				child_start_stream(cl);
			else if (cl->state == CL_WAIT_SPOOL)
				cl->following = true;
			else if (cl->state == CL_STREAMING && cl->stream)
				child_stream_more(cl);
		}
		cl = next;
	}
	for (cl = d->children; cl; cl = cl->next) {
		if (cl->following) {
			struct timeval tick = { 0, FOLLOW_TICK_US };
			evtimer_add(d->follow_ev, &tick);
			break;
		}
	}
}

/* Look again at cl's stream at the next tick. Without the timer (out of
 * memory) it waits for the end of the production, as it would unfollowed. */
static void child_follow(child_link_t *cl)
{
	site_t *d = cl->d;
	cl->following = true;
	if (d->follow_ev == NULL)
		d->follow_ev = evtimer_new(d->base, child_follow_cb, d);
	if (d->follow_ev && !evtimer_pending(d->follow_ev, NULL)) {
		struct timeval tick = { 0, FOLLOW_TICK_US };
		evtimer_add(d->follow_ev, &tick);
	}
}

/* Read the next whole frame of the spooled stream into cl->fbuf.
 * Returns its length, 0 at the end, or a negative error. */
static ssize_t child_read_frame(child_link_t *cl)
{
	size_t len = 0;
	int ret = stream_read_raw(cl->stream, conf_stream_frame_limit(cl->d->conf), &cl->fbuf,
	                          &cl->fcap, &len);
	if (ret == 1)
		return 0;
	return ret == SS_EOK ? (ssize_t)len : ret;
}

/* Queue spooled frames until the high mark, then wait for a drain. Whole
 * frames only: Pongs and status frames are queued between them, never
 * inside one. Under a rate limit only stream bytes spend the budget (a
 * frame may overdraw it; the deficit is waited off). */
static void child_stream_more(child_link_t *cl)
{
	site_t *d = cl->d;
	bool limited = d->conf->rate_limit_kib > 0;
	while (conn_pending_out(cl->conn) < STREAM_HIGH) {
		if (limited && cl->rate_debt > 0) {
			if (cl->rate_ev == NULL)
				cl->rate_ev = evtimer_new(d->base, child_rate_cb, cl);
			struct timeval tick = { 0, 100000 };
			if (cl->rate_ev)
				evtimer_add(cl->rate_ev, &tick);
			return;
		}
		if (cl->spool->state == SPOOL_PRODUCING) {
			/* Only frames the producer has published are whole. */
			if (cl->offset >= spool_readable(cl->spool)) {
				child_follow(cl);
				return;
			}
			clearerr(cl->stream);
		}
		ssize_t n = child_read_frame(cl);
		if (n < 0) {
			child_disconnect(cl, false, SS_EIO, "reading the spooled stream failed");
			return;
		}
		if (n == 0) {
			fclose(cl->stream);
			cl->stream = NULL;
			CL_LOG(SS_LOG_INFO, cl, "served versions %" PRIu64 "->%" PRIu64 "%s (%" PRIu64
			       " changes, %" PRIu64 " bytes)", cl->spool->prod.from, cl->spool->prod.to,
			       cl->spool->prod.full ? " as a snapshot" : "",
			       cl->spool->prod.upserts + cl->spool->prod.deletes, cl->offset);
			spool_put(d, cl->spool);
			cl->spool = NULL;
			cl->state = CL_READY;
			child_dequeue(d);
			return;
		}
		/* The frame buffer goes to the connection, which frees it once
		 * sent; the next frame gets a fresh one. */
		uint8_t *frame = cl->fbuf;
		cl->fbuf = NULL;
		cl->fcap = 0;
		if (conn_send_owned(cl->conn, frame, (size_t)n) != SS_EOK) {
			child_disconnect(cl, false, SS_ENOMEM, "out of memory");
			return;
		}
		cl->offset += (uint64_t)n;
		if (limited)
			cl->rate_debt += (uint64_t)n;
	}
	conn_want_drain(cl->conn, STREAM_CHUNK);
}

static void child_start_stream(child_link_t *cl)
{
	spool_t *s = cl->spool;
	if (s->state == SPOOL_FAILED) {
		char why[300];
		snprintf(why, sizeof(why), "cannot produce changes: %s", s->prod.err);
		child_disconnect(cl, false, s->ret ? s->ret : SS_EIO, why);
		return;
	}
	cl->stream = fopen(s->path, "rb");
	if (cl->stream == NULL) {
		child_disconnect(cl, false, SS_EIO, "spooled stream vanished");
		return;
	}
	cl->offset = 0;
	cl->state = CL_STREAMING;
	if (s->state == SPOOL_PRODUCING)
		CL_LOG(SS_LOG_INFO, cl, "serving the stream while it is produced");
	/* The same change set at the same version is the same bytes, so a
	 * child holding its first resume_offset bytes continues from there.
	 * An offset inside a frame means the child's bytes are not ours:
	 * continuing would feed it a torn frame on every retry, so it gets
	 * the whole stream instead (its PullStart starts the file over). */
	bool resume = cl->resume_offset > 0 && cl->resume_to == s->prod.to &&
	              cl->resume_offset < s->prod.bytes;
	if (resume && stream_seek_frame(cl->stream, cl->resume_offset,
	                                conf_stream_frame_limit(cl->d->conf)) != SS_EOK) {
		CL_LOG(SS_LOG_WARNING, cl, "cannot resume its pull at byte %" PRIu64 ": no frame of "
		       "the stream starts there; sending the whole stream", cl->resume_offset);
		resume = false;
		rewind(cl->stream);
	}
	if (resume) {
		Sitesync__PullStart ps = SITESYNC__PULL_START__INIT;
		ps.from_version = s->prod.from;
		ps.to_version = s->prod.to;
		ps.full = s->prod.full;
		ps.upserts = s->prod.upserts;
		ps.deletes = s->prod.deletes;
		ps.resume_offset = cl->resume_offset;
		frame_t f = SITESYNC__FRAME__INIT;
		f.msg_case = SITESYNC__FRAME__MSG_PULL_START;
		f.pull_start = &ps;
		if (conn_send(cl->conn, &f) != SS_EOK) {
			child_disconnect(cl, false, SS_ENOMEM, "out of memory");
			return;
		}
		cl->offset = cl->resume_offset;
		CL_LOG(SS_LOG_INFO, cl, "resuming its pull to version %" PRIu64 " at byte %" PRIu64,
		       s->prod.to, cl->resume_offset);
	}
	cl->resume_offset = 0;
	child_stream_more(cl);
}

/* spool_ready_cb: start every session waiting on \a s. */
static void child_spool_ready(spool_t *s, void *arg)
{
	site_t *d = arg;
	child_link_t *cl = d->children;
	while (cl) {
		child_link_t *next = cl->next;    /* cl may go away below */
		if (cl->state == CL_WAIT_SPOOL && cl->spool == s)
			child_start_stream(cl);
		else if (cl->state == CL_STREAMING && cl->spool == s && s->state == SPOOL_FAILED)
			child_start_stream(cl);     /* says why and disconnects */
		else if (cl->state == CL_STREAMING && cl->spool == s && cl->stream)
			child_stream_more(cl);      /* the rest, without waiting for a tick */
		cl = next;
	}
	/* A production slot is free now. */
	child_dequeue(d);
}

static void child_on_pull(child_link_t *cl, const Sitesync__PullRequest *p)
{
	site_t *d = cl->d;
	/* A delta from a version this site never produced: a child cannot hold
	 * it honestly, and it would cost a full scan and a spool file each. */
	if (!p->full && p->have_version > d->version) {
		char why[160];
		snprintf(why, sizeof(why), "PullRequest from version %" PRIu64 ", which this site "
		         "never produced (it holds %" PRIu64 ")", p->have_version, d->version);
		CL_LOG(SS_LOG_WARNING, cl, "%s", why);
		child_disconnect(cl, false, SS_EPROTO, why);
		return;
	}
	cl->version = p->have_version;
	cl->resume_to = p->resume_to;
	cl->resume_offset = p->resume_offset;
	int active = spool_producing_unwanted(d);
	for (child_link_t *o = d->children; o; o = o->next)
		if (o->state == CL_WAIT_SPOOL || o->state == CL_STREAMING)
			active++;
	if (active >= d->conf->max_pulls) {
		/* Admission control: wait for a slot; never fail for being late. */
		cl->state = CL_QUEUED;
		cl->queued_seq = ++d->next_queue_seq;
		cl->queued_have = p->have_version;
		cl->queued_full = p->full;
		CL_LOG(SS_LOG_INFO, cl, "pull from version %" PRIu64 " queued: %d pulls already served",
		       p->have_version, active);
		return;
	}
	child_start_pull(cl, p->have_version, p->full);
}

static void child_start_pull(child_link_t *cl, uint64_t have, bool full)
{
	site_t *d = cl->d;
	Sitesync__PullRequest req = SITESYNC__PULL_REQUEST__INIT;
	req.have_version = have;
	req.full = full;
	const Sitesync__PullRequest *p = &req;
	spool_t *s = spool_get(d, p->have_version, p->full, child_spool_ready, d);
	if (s == NULL) {
		child_disconnect(cl, false, SS_ENOMEM, "out of memory");
		return;
	}
	cl->spool = s;
	cl->state = CL_WAIT_SPOOL;
	CL_LOG(SS_LOG_INFO, cl, "pull from version %" PRIu64 "%s", p->have_version,
	       p->full ? " (full snapshot asked)" : "");
	if (s->state != SPOOL_PRODUCING)
		child_start_stream(cl);
	else if (d->conf->serve_producing && cl->resume_offset == 0)
		child_follow(cl);   /* starts once PullStart is in the file */
}

static void child_on_status(child_link_t *cl, const Sitesync__StatusReport *rep)
{
	site_t *d = cl->d;
	int refused = 0;
	bool changed = false;
	char first[4], why[160];
	status_accept_report(d, cl->site, rep, &refused, first, why, sizeof(why), &changed);
	status_row_t *own = status_table_find(d->subtree, cl->site);
	if (own && strcmp(own->via, cl->site) == 0)
		cl->version = own->row->catalog_version;
	if (refused > 0) {
		CL_LOG(SS_LOG_WARNING, cl, "refused %d status row(s) (first: %s: %s)", refused, first, why);
		site_message(d, SS_MSG_ROWS_REFUSED, "warning",
		             "Child site %s reported %d status row(s) that were refused (first: %s: %s)",
		             cl->site, refused, first, why);
	}
	/* A heartbeat that changed nothing but report times travels up with
	 * the next report instead of causing one of the whole subtree. */
	if (changed)
		site_status_changed(d);
	else
		site_status_touched(d);
}

static void child_on_ping(child_link_t *cl, const Sitesync__Ping *p)
{
	site_t *d = cl->d;
	Sitesync__Pong pong = SITESYNC__PONG__INIT;
	pong.nonce = p->nonce;
	pong.catalog_version = d->version;
	pong.top_version = d->top_version > d->version ? d->top_version : d->version;
	pong.digest.data = d->digest.b;
	pong.digest.len = SS_DIGEST_LEN;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PONG;
	f.pong = &pong;
	(void)conn_send(cl->conn, &f);
}

static void child_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg)
{
	child_link_t *cl = arg;
	switch (ev) {
	case CONN_EV_UP:
		child_on_up(cl);
		return;
	case CONN_EV_DOWN:
		child_disconnect(cl, true, 0, "connection lost");
		return;
	case CONN_EV_DRAIN:
		if (cl->state == CL_STREAMING && cl->stream)
			child_stream_more(cl);
		return;
	case CONN_EV_FRAME:
		break;
	}
	cl->last_seen = time(NULL);
	char why[96];
	if (cl->state == CL_WAIT_HELLO) {
		if (cl->checking && f->msg_case == SITESYNC__FRAME__MSG_HELLO && !cl->hello_held) {
			/* Keep it until the database says whether the site is approved. */
			const Sitesync__Hello *h = f->hello;
			cl->hello_held = true;
			cl->held_proto = h->protocol_version;
			snprintf(cl->held_site, sizeof(cl->held_site), "%s", h->site);
			cl->held_version = h->catalog_version;
			cl->held_hierarchy_len = h->hierarchy_id.len <= sizeof(cl->held_hierarchy) ?
			                         h->hierarchy_id.len : sizeof(cl->held_hierarchy) + 1;
			if (cl->held_hierarchy_len > 0 && cl->held_hierarchy_len <= sizeof(cl->held_hierarchy))
				memcpy(cl->held_hierarchy, h->hierarchy_id.data, cl->held_hierarchy_len);
			else if (cl->held_hierarchy_len > 0)
				cl->held_hierarchy_len = 1;    /* wrong length: refused as another hierarchy */
			/* No hierarchy_id at all stays 0: an older child, checked as such. */
			return;
		}
		if (cl->checking) {
			child_disconnect(cl, false, SS_EPROTO, "only one Hello before approval");
			return;
		}
		if (f->msg_case == SITESYNC__FRAME__MSG_HELLO) {
			child_on_hello(cl, f->hello);
			return;
		}
		snprintf(why, sizeof(why), "expected Hello, got %s", frame_msg_name(f));
		CL_LOG(SS_LOG_WARNING, cl, "%s", why);
		child_disconnect(cl, false, SS_EPROTO, why);
		return;
	}
	switch (f->msg_case) {
	case SITESYNC__FRAME__MSG_PING:
		child_on_ping(cl, f->ping);
		return;
	case SITESYNC__FRAME__MSG_STATUS_REPORT:
		child_on_status(cl, f->status_report);
		return;
	case SITESYNC__FRAME__MSG_PULL_REQUEST:
		if (cl->state == CL_READY) {
			child_on_pull(cl, f->pull_request);
			return;
		}
		snprintf(why, sizeof(why), "PullRequest while a pull is in progress");
		break;
	case SITESYNC__FRAME__MSG_ERROR:
		CL_LOG(SS_LOG_WARNING, cl, "reports error %d: %s", f->error->code, f->error->message);
		return;
	default:
		snprintf(why, sizeof(why), "unexpected %s from a child", frame_msg_name(f));
		break;
	}
	CL_LOG(SS_LOG_WARNING, cl, "%s", why);
	child_disconnect(cl, false, SS_EPROTO, why);
}

typedef struct {
	site_t *d;
	uint64_t id;
	Sitesync__SyncRequest req;
} wave_send_t;

static void child_send_request(child_link_t *cl, const Sitesync__SyncRequest *req)
{
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_SYNC_REQUEST;
	f.sync_request = (Sitesync__SyncRequest *)req;
	(void)conn_send(cl->conn, &f);
}

static void child_wave_cb(evutil_socket_t fd, short what, void *arg)
{
	wave_send_t *w = arg;
	for (child_link_t *cl = w->d->children; cl; cl = cl->next)
		if (cl->id == w->id && cl->state != CL_WAIT_HELLO)
			child_send_request(cl, &w->req);
	free(w);
}

void child_link_notify_all(site_t *d, bool full)
{
	Sitesync__SyncRequest req = SITESYNC__SYNC_REQUEST__INIT;
	req.version = d->version;
	req.full = full;
	req.top_version = d->top_version > d->version ? d->top_version : d->version;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_SYNC_REQUEST;
	f.sync_request = &req;
	char list[256] = "";
	size_t used = 0;
	int index = 0;
	for (child_link_t *cl = d->children; cl; cl = cl->next) {
		if (cl->state == CL_WAIT_HELLO)
			continue;
		/* Staggered waves: hundreds of children must not all ask at once. */
		int wave = index++ / d->conf->wave_size;
		wave_send_t *w = wave ? calloc(1, sizeof(*w)) : NULL;
		if (w) {
			w->d = d;
			w->id = cl->id;
			w->req = req;
			long ms = (long)wave * d->conf->wave_ms;
			struct timeval tv = { ms / 1000, (ms % 1000) * 1000 };
			if (event_base_once(d->base, -1, EV_TIMEOUT, child_wave_cb, w, &tv) != 0) {
				free(w);
				w = NULL;
			}
		}
		if (w == NULL && conn_send(cl->conn, &f) != SS_EOK)
			continue;
		if (used + 6 < sizeof(list))
			used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s",
			                         used ? ", " : "", cl->site);
	}
	if (used)
		site_message(d, SS_MSG_REQUEST_SENT, "info",
		             "Sending sync request to child site(s): %s (version %" PRIu64 "%s)",
		             list, d->version, full ? ", full" : "");
}

void child_link_drop(site_t *d, const char *site, const char *why)
{
	child_link_t *cl = d->children;
	while (cl) {
		child_link_t *next = cl->next;
		if (strcmp(cl->site, site) == 0)
			child_disconnect(cl, false, SS_EDENIED, why);
		cl = next;
	}
}

void child_link_free_all(site_t *d)
{
	while (d->children)
		child_disconnect(d->children, false, 0, "shutting down");
	if (d->follow_ev)
		event_free(d->follow_ev);
	d->follow_ev = NULL;
}
