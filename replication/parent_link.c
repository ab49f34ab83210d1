/* Child side of a replication link: dial, hello, pull, apply, report. */
#include "replication/parent_link.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "proto/version.h"
#include "replication/apply.h"
#include "replication/child_link.h"
#include "catalog/stream.h"
#include "replication/status.h"
#include "net/conn.h"
#include "replication/site.h"
#include "replication/synchist.h"
#include "common/errcode.h"
#include "common/log.h"
#include "storage/db.h"
#include "catalog/feed.h"

typedef enum {
	PL_IDLE,
	PL_CONNECTING,
	PL_HELLO,
	PL_READY,
	PL_PULLING,
	PL_APPLYING,
} pl_state_t;

static const char *const pl_state_names[] = {
	"idle", "connecting", "hello", "ready", "pulling", "applying",
};

struct parent_link {
	/* Set by the caller. */
	struct site *d;
	/* Internal, starts at zero. */
	conn_t *conn;
	pl_state_t state;
	char site[4];
	uint64_t parent_version;
	uint8_t parent_digest[32];
	uint64_t digest_version;    /* version parent_digest belongs to */
	bool have_digest;
	time_t last_seen;
	int attempts;
	bool want_full;
	bool want_manual;           /* the next pull was asked for by `sitesync sync` */
	bool connected_once;
	struct event *retry_ev;
	struct event *ping_ev;
	uint64_t nonce;
	FILE *stream;
	char path[512];
	char meta_path[512];        /* "have to full" of the stored partial stream */
	bool resuming;              /* asked the parent to continue at resume_offset */
	uint64_t resume_offset;
	apply_t *apply;             /* in flight; owned by the job until done */
	/* Applying while the stream arrives ([replication] apply_while_receiving):
	 * the receiver publishes whole frames to the apply job through feed. */
	stream_feed_t *feed;
	bool feed_lost;             /* aborted: the link went down mid-stream */
	bool apply_early;           /* the job ended before PullDone came... */
	int apply_early_ret;        /* ... with this result, kept until then */
	char addrs[4][256];         /* [parent] address: one or more, tried in turn */
	int n_addrs;
	int addr_next;
	bool freeing;               /* free once the apply job returns */
};

static void pl_conn_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg);

#define PL_LOG(lvl, p, fmt, ...) log_peer(lvl, "parent", (p)->site, fmt, ##__VA_ARGS__)
static void pl_schedule_connect(parent_link_t *p);

static void pl_set_state(parent_link_t *p, pl_state_t s)
{
	if (p->state != s)
		log_debug("parent link: %s -> %s", pl_state_names[p->state], pl_state_names[s]);
	p->state = s;
}

const char *parent_link_site(const parent_link_t *p)
{
	return p->site;
}

uint64_t parent_link_version(const parent_link_t *p)
{
	return p->parent_version;
}

time_t parent_link_last_seen(const parent_link_t *p)
{
	return p->last_seen;
}

bool parent_link_busy(const parent_link_t *p)
{
	return p->state == PL_PULLING || p->state == PL_APPLYING || p->apply != NULL;
}

int parent_link_pull_now(parent_link_t *p, bool full)
{
	site_t *d = p->d;
	if (parent_link_busy(p) || d->import_running)
		return SS_EBUSY;
	if (p->state != PL_READY || p->conn == NULL)
		return SS_EAGAIN;
	if (full)
		p->want_full = true;
	if (p->parent_version <= d->version && !p->want_full)
		return SS_EEXIST;
	d->self.next_retry = 0;     /* asked for now: no back-off */
	p->want_manual = true;
	parent_link_kick(p);
	return parent_link_busy(p) ? SS_EOK : SS_EAGAIN;
}

Sitesync__LinkState parent_link_state(const parent_link_t *p)
{
	if (p->conn == NULL || p->state < PL_READY)
		return SITESYNC__LINK_STATE__LINK_DOWN;
	/* Silent for more than two heartbeats but not yet timed out. */
	if (time(NULL) - p->last_seen > 2 * p->d->conf->heartbeat_seconds)
		return SITESYNC__LINK_STATE__LINK_DEGRADED;
	return SITESYNC__LINK_STATE__LINK_ACTIVE;
}

bool parent_link_digest(const parent_link_t *p, uint64_t *version, uint8_t digest[32])
{
	if (!p->have_digest || p->conn == NULL)
		return false;
	*version = p->digest_version;
	memcpy(digest, p->parent_digest, 32);
	return true;
}

static void pl_send(parent_link_t *p, const frame_t *f)
{
	if (p->conn && conn_send(p->conn, f) != SS_EOK)
		log_warning("parent link: cannot queue %s", frame_msg_name(f));
}

void parent_link_report(parent_link_t *p)
{
	if (p->conn == NULL || p->state < PL_READY)
		return;
	Sitesync__StatusReport rep;
	status_report_build(p->d, &rep, true);
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_STATUS_REPORT;
	f.status_report = &rep;
	/* Signed rows say it all; plain rows only where nothing could be signed. */
	size_t n_rows = rep.n_rows;
	if (rep.n_signed_rows > 0)
		rep.n_rows = 0;
	pl_send(p, &f);
	rep.n_rows = n_rows;
	status_report_clear(&rep);
	site_status_sent(p->d);
}

static void pl_apply_release(parent_link_t *p)
{
	if (p->apply) {
		apply_clear(p->apply);
		free(p->apply);
	}
	p->apply = NULL;
	stream_feed_free(p->feed);
	p->feed = NULL;
	p->apply_early = false;
	p->feed_lost = false;
}

/* The stream will not be completed on this connection: the apply reading
 * behind it rolls back; the stored part stays for the resume. */
static void pl_feed_lost(parent_link_t *p)
{
	if (p->feed == NULL)
		return;
	p->feed_lost = true;
	stream_feed_abort(p->feed, SS_ETRUNC);
	if (p->apply_early)
		pl_apply_release(p);      /* the job is over already */
}

/* Drop the connection (and any partial pull); reconnect later. */
static void pl_lost(parent_link_t *p, bool conn_gone, const char *why)
{
	site_t *d = p->d;
	if (!conn_gone && p->conn)
		conn_close(p->conn, 0, "%s", why);
	p->conn = NULL;
	if (p->stream) {
		/* Kept: the next pull of the same change set resumes from it. */
		fclose(p->stream);
		p->stream = NULL;
	}
	bool was_up = p->state >= PL_READY;
	if (p->state == PL_PULLING) {
		sync_status_failed(d, SS_ETRUNC, "connection to parent lost during pull");
		synchist_record(d, "pull", false, d->version, d->version);
		pl_feed_lost(p);
	}
	/* An apply in flight finishes on its own; the link just goes down. */
	if (p->state != PL_APPLYING)
		pl_set_state(p, PL_IDLE);
	if (was_up) {
		site_message(d, SS_MSG_PARENT_LOST, "warning", "Lost connection to parent %s: %s",
		             p->site[0] ? p->site : d->conf->parent_address, why);
		site_status_changed(d);
	}
	pl_schedule_connect(p);
}

static void pl_connect_cb(evutil_socket_t fd, short what, void *arg)
{
	parent_link_t *p = arg;
	site_t *d = p->d;
	if (p->conn)
		return;
	/* Several addresses name daemons sharing the parent's database (HA):
	 * after a failure the next one is tried. */
	const char *addr = p->addrs[p->addr_next % p->n_addrs];
	p->addr_next++;
	int ret = conn_connect(d->base, d->dns, d->tls_client, addr, &p->conn);
	if (ret != SS_EOK) {
		log_warning("cannot dial parent %s: %s", addr, ss_strerror(ret));
		p->conn = NULL;
		pl_schedule_connect(p);
		return;
	}
	if (p->state != PL_APPLYING)
		pl_set_state(p, PL_CONNECTING);
	conn_track(p->conn, &d->live_conns);
	conn_set_cb(p->conn, pl_conn_cb, p);
}

/* Exponential backoff from 0.5 s to reconnect_max, with jitter so a
 * parent restart is not met by every child at the same instant. */
static void pl_schedule_connect(parent_link_t *p)
{
	if (p->freeing)
		return;
	double base = 0.5;
	for (int i = 0; i < p->attempts && base < p->d->conf->reconnect_max; i++)
		base *= 2;
	if (base > p->d->conf->reconnect_max)
		base = p->d->conf->reconnect_max;
	if (p->attempts == 0)
		base = 0.05;
	double delay = base * (0.5 + 0.5 * ((double)arc4random_uniform(1000) / 1000.0));
	p->attempts++;
	struct timeval tv = { (time_t)delay, (suseconds_t)((delay - (double)(time_t)delay) * 1e6) };
	evtimer_add(p->retry_ev, &tv);
}

static void pl_send_hello(parent_link_t *p)
{
	site_t *d = p->d;
	Sitesync__Hello h = SITESYNC__HELLO__INIT;
	h.protocol_version = SS_PROTO_VERSION;
	h.site = d->conf->site_code;
	h.software_version = SS_SOFTWARE_VERSION;
	h.catalog_version = d->version;
	h.hierarchy_id.data = d->hierarchy_id;
	h.hierarchy_id.len = sizeof(d->hierarchy_id);
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_HELLO;
	f.hello = &h;
	pl_send(p, &f);
}

static void pl_learn_top(parent_link_t *p, uint64_t top)
{
	site_t *d = p->d;
	if (top > d->top_version) {
		d->top_version = top;
		if (top > d->version && d->self.behind_since == 0) {
			d->self.behind_since = time(NULL);
			site_status_changed(d);
		}
	}
}

static void pl_apply_done(int ret, void *arg);

/* The loop leaves p->apply alone until pl_apply_done(). */
static int pl_apply_work(PGconn *conn, void *arg)
{
	parent_link_t *p = arg;
	return apply_stream(conn, p->apply);
}

/* Forget a stored partial stream. */
static void pl_partial_drop(parent_link_t *p)
{
	unlink(p->path);
	unlink(p->meta_path);
	p->resuming = false;
	p->resume_offset = 0;
}

/* A partial stream stored by an earlier, interrupted pull of the same
 * change set: how many bytes of whole frames it holds (0 = unusable) and
 * whether it is in fact complete (the apply never ran). */
static uint64_t pl_partial_usable(parent_link_t *p, uint64_t *to, bool *full, bool *complete)
{
	site_t *d = p->d;
	unsigned long long have = 0, mto = 0;
	int mfull = 0;
	*full = *complete = false;
	FILE *m = fopen(p->meta_path, "r");
	if (m == NULL)
		return 0;
	int got = fscanf(m, "%llu %llu %d", &have, &mto, &mfull);
	fclose(m);
	if (got != 3 || have != d->version || (p->want_full && !mfull))
		return 0;
	stream_reader_t rd;
	if (stream_reader_open(&rd, p->path, conf_stream_frame_limit(d->conf)) != SS_EOK)
		return 0;
	uint64_t good = 0;
	bool first = true;
	for (;;) {
		frame_t *f = NULL;
		if (stream_reader_next(&rd, &f) != SS_EOK)
			break;
		bool ok = first ? f->msg_case == SITESYNC__FRAME__MSG_PULL_START
		                : f->msg_case == SITESYNC__FRAME__MSG_BATCH ||
		                  f->msg_case == SITESYNC__FRAME__MSG_PULL_DONE;
		if (ok && f->msg_case == SITESYNC__FRAME__MSG_PULL_DONE)
			*complete = true;
		frame_free(f);
		if (!ok)
			break;
		first = false;
		good = rd.offset;
		if (*complete)
			break;
	}
	stream_reader_close(&rd);
	*to = mto;
	*full = mfull != 0;
	return good;
}

static void pl_on_pull_done(parent_link_t *p);

static void pl_start_pull(parent_link_t *p)
{
	site_t *d = p->d;
	uint64_t to = 0;
	bool full = false, complete = false;
	uint64_t offset = pl_partial_usable(p, &to, &full, &complete);
	/* For the sync history: who asked, and from where. */
	snprintf(d->self.trigger, sizeof(d->self.trigger), "%s", p->want_manual ? "manual" : "parent");
	snprintf(d->self.source, sizeof(d->self.source), "parent %s (%s)", p->site[0] ? p->site : "?",
	         d->conf->parent_address ? d->conf->parent_address : "");
	p->want_manual = false;
	p->resuming = false;
	p->resume_offset = 0;
	if (offset > 0 && complete) {
		/* Received in full before a crash, never applied: apply it now. */
		log_notice("applying the pull to version %" PRIu64 " stored before a restart", to);
		d->self.state = SITESYNC__SYNC_STATE__SYNC_SYNCING;
		d->self.last_start = time(NULL);
		pl_set_state(p, PL_PULLING);
		p->stream = NULL;
		pl_on_pull_done(p);
		return;
	}
	if (offset > 0 && truncate(p->path, (off_t)offset) == 0 &&
	    (p->stream = fopen(p->path, "ab")) != NULL) {
		p->resuming = true;
		p->resume_offset = offset;
		log_info("resuming the interrupted pull to version %" PRIu64 " at byte %" PRIu64, to, offset);
	} else {
		pl_partial_drop(p);
		p->stream = fopen(p->path, "wb");
	}
	if (p->stream == NULL) {
		log_error("cannot write %s: %s", p->path, strerror(errno));
		return;
	}
	setvbuf(p->stream, NULL, _IOFBF, 1 << 20);
	Sitesync__PullRequest req = SITESYNC__PULL_REQUEST__INIT;
	req.have_version = d->version;
	req.full = p->want_full;
	if (p->resuming) {
		/* Ask for the kind of stream stored: a delta to the same version
		 * is other bytes. */
		req.full = p->want_full || full;
		req.resume_to = to;
		req.resume_offset = p->resume_offset;
	}
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PULL_REQUEST;
	f.pull_request = &req;
	pl_send(p, &f);
	pl_set_state(p, PL_PULLING);

	sync_status_t *s = &d->self;
	s->state = SITESYNC__SYNC_STATE__SYNC_SYNCING;
	s->last_start = time(NULL);
	s->progress_done = s->progress_total = 0;
	site_synclog(d, "Starting sync");
	site_message(d, SS_MSG_SYNC_STARTED, "info",
	             "Performing sync on parent request: parent %s holds version %" PRIu64
	             ", this site %" PRIu64 "%s", p->site, p->parent_version, d->version,
	             p->want_full ? " (full snapshot)" : "");
	site_message(d, SS_MSG_SYNC_FETCHING, "info", "Pulling from parent %s", p->site);
	site_status_changed(d);
}

void parent_link_kick(parent_link_t *p)
{
	site_t *d = p->d;
	if (p->state != PL_READY || p->conn == NULL || p->apply != NULL)
		return;
	/* An import is moving the catalog: pull after it, from its version.
	 * A standby never writes: the active writer pulls. */
	if (d->import_running || !d->active)
		return;
	if (p->parent_version > d->version || p->want_full) {
		if (d->self.next_retry && time(NULL) < d->self.next_retry)
			return;
		pl_start_pull(p);
	}
}

void parent_link_want_full(parent_link_t *p)
{
	p->want_full = true;
}

static void pl_on_hello(parent_link_t *p, const Sitesync__Hello *h)
{
	site_t *d = p->d;
	if (h->protocol_version < SS_PROTO_MIN_VERSION || h->protocol_version > SS_PROTO_VERSION) {
		log_error("parent speaks protocol version %u; this site %d to %d",
		          h->protocol_version, SS_PROTO_MIN_VERSION, SS_PROTO_VERSION);
		pl_lost(p, false, "protocol version mismatch");
		return;
	}
	if (strcmp(h->site, conn_peer_site(p->conn)) != 0) {
		log_error("parent Hello claims site '%.8s' but its certificate says %s",
		          h->site, conn_peer_site(p->conn));
		pl_lost(p, false, "parent identity mismatch");
		return;
	}
	snprintf(p->site, sizeof(p->site), "%s", h->site);
	p->parent_version = h->catalog_version;
	p->attempts = 0;
	/* Reconnect to this address first next time. */
	p->addr_next = (p->addr_next + p->n_addrs - 1) % p->n_addrs;
	/* The parent streams entries up to [upstream] max_entry_bytes, one per Batch. */
	conn_set_limit(p->conn, conf_stream_frame_limit(d->conf));
	if (p->state != PL_APPLYING)
		pl_set_state(p, PL_READY);
	pl_learn_top(p, h->top_version);
	site_message(d, SS_MSG_PARENT_CONNECTED, "info",
	             "Connected to parent %s (%s), which holds version %" PRIu64,
	             p->site, conn_peer_addr(p->conn), p->parent_version);
	if (p->parent_version < d->version)
		PL_LOG(SS_LOG_WARNING, p, "holds version %" PRIu64 ", older than this site's %" PRIu64,
		       p->parent_version, d->version);
	parent_link_report(p);
	site_status_changed(d);
	parent_link_kick(p);
}

/* Bytes in the stream file (flushed): what a reader behind may read. An
 * append-mode stream's position says nothing before its first write. */
static off_t pl_stream_size(parent_link_t *p)
{
	struct stat st;
	return fstat(fileno(p->stream), &st) == 0 ? st.st_size : -1;
}

/* Store the frame exactly as received: the stored stream is then byte for
 * byte the parent's, which is what lets an interrupted pull resume. */
static void pl_stream_write(parent_link_t *p, const frame_t *f)
{
	size_t len = 0;
	const uint8_t *raw = conn_frame_raw(p->conn, &len);
	if (p->stream == NULL || raw == NULL)
		return;
	if (fwrite(raw, 1, len, p->stream) != len ||
	    (p->feed && fflush(p->stream) != 0)) {
		log_error("cannot store pull stream in %s", p->path);
		fclose(p->stream);
		p->stream = NULL;
		if (p->feed)
			stream_feed_abort(p->feed, SS_EIO);
	} else if (p->feed) {
		off_t at = pl_stream_size(p);
		if (at > 0)
			stream_feed_publish(p->feed, (uint64_t)at);
	}
	p->d->self.bytes_received += len;
	(void)f;
}

static void pl_apply_early_start(parent_link_t *p);

/* PullStart opens the stream file, or continues the stored one when the
 * parent agreed to resume. */
static void pl_on_pull_start(parent_link_t *p, const frame_t *f)
{
	site_t *d = p->d;
	const Sitesync__PullStart *ps = f->pull_start;
	if (p->resuming && ps->resume_offset == p->resume_offset) {
		log_info("parent %s resumes the pull at byte %" PRIu64, p->site, ps->resume_offset);
	} else {
		if (p->resuming) {
			/* The parent moved on: start the stream over. */
			if (p->stream)
				fclose(p->stream);
			p->stream = fopen(p->path, "wb");
			if (p->stream)
				setvbuf(p->stream, NULL, _IOFBF, 1 << 20);
			p->resuming = false;
		}
		pl_stream_write(p, f);
		FILE *m = fopen(p->meta_path, "w");
		if (m) {
			fprintf(m, "%" PRIu64 " %" PRIu64 " %d\n", d->version, ps->to_version, ps->full ? 1 : 0);
			fclose(m);
		}
	}
	d->self.progress_total = ps->upserts + ps->deletes;
	if (ps->to_version > p->parent_version)
		p->parent_version = ps->to_version;
	pl_apply_early_start(p);
}

static void pl_fail_sync(parent_link_t *p, int code, const char *msg)
{
	site_t *d = p->d;
	sync_status_t *s = &d->self;
	sync_status_failed(d, code, "%s", msg);
	/* Back off: heartbeat * 2^(n-1), capped by the configured retry interval. */
	long delay = d->conf->heartbeat_seconds;
	for (uint32_t i = 1; i < s->consecutive_failures && delay < 60L * d->conf->retry_minutes; i++)
		delay *= 2;
	if (delay > 60L * d->conf->retry_minutes)
		delay = 60L * d->conf->retry_minutes;
	s->next_retry = time(NULL) + delay;
	site_synclog(d, "Sync failed: %s. Will retry in %ld seconds", msg, delay);
	site_message(d, SS_MSG_SYNC_FAILED, "error", "Sync failed: %s (error %d)", msg,
	             s->last_error_code);
	synchist_record(d, "pull", false, d->version, d->version);
	site_status_changed(d);
}

/* The apply job over the stored stream; with a feed it starts at PullStart
 * and reads behind the receiver. */
static int pl_apply_submit(parent_link_t *p, stream_feed_t *feed)
{
	site_t *d = p->d;
	apply_t *a = calloc(1, sizeof(*a));
	if (a == NULL)
		return SS_ENOMEM;
	a->path = p->path;
	a->limit = conf_stream_frame_limit(d->conf);
	a->keep_versions = d->conf->keep_versions;
	a->allow_same = p->want_full;
	/* A parent silent this long is dropped by the link first. */
	a->feed = feed;
	a->feed_wait = 3 * d->conf->heartbeat_seconds + 60;
	manifest_keys_copy(&a->keys, &d->keys);
	p->apply = a;
	p->feed = feed;
	p->apply_early = p->feed_lost = false;
	if (db_submit(d->db, DB_BULK, pl_apply_work, pl_apply_done, p) != SS_EOK) {
		p->feed = NULL;
		pl_apply_release(p);
		return SS_ENOMEM;
	}
	return SS_EOK;
}

/* PullStart stored: apply while the rest arrives, when configured. */
static void pl_apply_early_start(parent_link_t *p)
{
	site_t *d = p->d;
	if (!d->conf->apply_receiving || p->stream == NULL || p->apply != NULL)
		return;
	stream_feed_t *feed = NULL;
	off_t at = fflush(p->stream) == 0 ? pl_stream_size(p) : -1;
	if (at <= 0 || stream_feed_new(&feed, (uint64_t)at) != SS_EOK)
		return;                 /* applied after PullDone instead */
	if (pl_apply_submit(p, feed) != SS_EOK)
		stream_feed_free(feed);
}

static void pl_apply_finish(parent_link_t *p, int ret);

static void pl_on_pull_done(parent_link_t *p)
{
	site_t *d = p->d;
	/* No open stream: a complete one stored before a restart is applied. */
	if (p->stream != NULL && fclose(p->stream) != 0) {
		p->stream = NULL;
		if (p->feed) {
			/* The job reading behind gives up; its end reports this. */
			stream_feed_abort(p->feed, SS_EIO);
			p->feed_lost = true;
			if (p->apply_early)
				pl_apply_release(p);
		}
		pl_partial_drop(p);
		pl_fail_sync(p, SS_EIO, "cannot store the pull stream");
		pl_set_state(p, PL_READY);
		return;
	}
	p->stream = NULL;
	pl_set_state(p, PL_APPLYING);
	site_message(d, SS_MSG_SYNC_WRITING, "info", "Writing the catalog into the site database");
	if (p->feed) {
		/* Already applying what arrived: the rest is there. */
		stream_feed_end(p->feed);
		if (p->apply_early)
			pl_apply_finish(p, p->apply_early_ret);
		return;
	}
	if (pl_apply_submit(p, NULL) != SS_EOK) {
		pl_fail_sync(p, SS_ENOMEM, "out of memory");
		pl_set_state(p, PL_READY);
	}
}

static void pl_apply_done(int ret, void *arg)
{
	parent_link_t *p = arg;
	if (p->freeing) {
		/* Shutting down: the result stands in the database, nothing to tell. */
		pl_apply_release(p);
		return;
	}
	if (p->feed && p->feed_lost) {
		/* Rolled back behind a stream that stopped: the link said so, and
		 * the stored part is kept for the resume. */
		pl_apply_release(p);
		parent_link_kick(p);
		return;
	}
	if (p->feed && p->state == PL_PULLING) {
		/* Refused before the stream ended: told at PullDone, as always. */
		p->apply_early = true;
		p->apply_early_ret = ret;
		return;
	}
	pl_apply_finish(p, ret);
}

static void pl_apply_finish(parent_link_t *p, int ret)
{
	site_t *d = p->d;
	apply_t *a = p->apply;
	p->apply = NULL;
	stream_feed_free(p->feed);
	p->feed = NULL;
	p->apply_early = false;
	pl_set_state(p, p->conn && p->site[0] ? PL_READY : PL_IDLE);
	/* Applied or refused, the stored stream has served its purpose. */
	pl_partial_drop(p);
	if (ret == SS_EOK) {
		/* A full re-pull of the version held (sync --full) re-verifies it:
		 * the version does not move, and the counts are what differed. */
		bool same = a->to == a->held;
		if (same) {
			sync_status_succeeded(d, a->added, a->changed, a->removed, a->expired,
			                      a->upserts + a->deletes);
			site_synclog(d, "Re-verified version %" PRIu64 " against a full snapshot: %" PRIu64
			             " added, %" PRIu64 " changed, %" PRIu64 " removed, version stays %"
			             PRIu64, a->to, a->added, a->changed, a->removed, a->to);
			site_synclog(d, "Successfully synced site with parent %s, version %" PRIu64, p->site,
			             a->to);
			site_synclog_time(d, NULL);
		} else {
			sync_status_applied(d, a, "Successfully synced site with parent %s, version %" PRIu64,
			                    p->site, a->to);
		}
		p->want_full = false;
		site_message(d, SS_MSG_SYNC_DONE, "info", "Synced with parent %s: version %s%" PRIu64
		             "%s, %" PRIu64 " added, %" PRIu64 " changed, %" PRIu64 " removed, %" PRIu64
		             " expired", p->site, same ? "stays " : "", a->to,
		             same ? " (full snapshot re-verified)" : "", a->added, a->changed,
		             a->removed, a->expired);
		site_trust_announced(d, a->key_announced, a->next_key);
		synchist_record(d, "pull", same && a->added + a->changed + a->removed == 0, d->version,
		                a->to);
		site_version_committed(d, a->to, &a->digest, a->entries, a->full);
	} else {
		if (ret == SS_EDIGEST)
			p->want_full = true;    /* repair with a snapshot next time */
		pl_fail_sync(p, ret, a->err[0] ? a->err : ss_strerror(ret));
	}
	apply_clear(a);
	free(a);
	parent_link_kick(p);
}

static void pl_on_frame(parent_link_t *p, const frame_t *f)
{
	site_t *d = p->d;
	p->last_seen = time(NULL);
	if (p->state == PL_HELLO || (p->state == PL_APPLYING && p->site[0] == '\0')) {
		if (f->msg_case == SITESYNC__FRAME__MSG_HELLO) {
			pl_on_hello(p, f->hello);
			return;
		}
		if (f->msg_case == SITESYNC__FRAME__MSG_ERROR) {
			log_error("parent refused this site: %s (error %d)", f->error->message, f->error->code);
			sync_status_t *s = &d->self;
			s->last_error_code = ss_errnum(f->error->code);
			char said[sizeof(s->last_error)];
			log_escape(f->error->message, said, sizeof(said));
			snprintf(s->last_error, sizeof(s->last_error), "parent refused: %s", said);
			site_status_changed(d);
			return;
		}
		pl_lost(p, false, "parent did not start with Hello");
		return;
	}
	switch (f->msg_case) {
	case SITESYNC__FRAME__MSG_SYNC_REQUEST:
		if (f->sync_request->version > p->parent_version)
			p->parent_version = f->sync_request->version;
		pl_learn_top(p, f->sync_request->top_version);
		if (f->sync_request->full)
			p->want_full = true;
		log_info("sync request from parent %s: version %" PRIu64 "%s", p->site,
		         f->sync_request->version, f->sync_request->full ? " (full)" : "");
		/* A request from the parent is a fresh reason to try again. */
		d->self.next_retry = 0;
		parent_link_kick(p);
		return;
	case SITESYNC__FRAME__MSG_PONG:
		p->parent_version = f->pong->catalog_version;
		if (f->pong->digest.len == 32) {
			memcpy(p->parent_digest, f->pong->digest.data, 32);
			p->digest_version = f->pong->catalog_version;
			p->have_digest = true;
		}
		pl_learn_top(p, f->pong->top_version);
		parent_link_kick(p);
		return;
	case SITESYNC__FRAME__MSG_PULL_START:
	case SITESYNC__FRAME__MSG_BATCH:
	case SITESYNC__FRAME__MSG_PULL_DONE:
		if (p->state != PL_PULLING)
			break;
		if (f->msg_case == SITESYNC__FRAME__MSG_PULL_START) {
			pl_on_pull_start(p, f);
			return;
		}
		pl_stream_write(p, f);
		if (f->msg_case == SITESYNC__FRAME__MSG_BATCH) {
			d->self.progress_done += f->batch->n_entries + f->batch->n_deletes;
		} else {
			if (f->pull_done->digest.len == 32) {
				memcpy(p->parent_digest, f->pull_done->digest.data, 32);
				p->digest_version = f->pull_done->version;
				p->have_digest = true;
			}
			pl_on_pull_done(p);
		}
		return;
	case SITESYNC__FRAME__MSG_ERROR:
		PL_LOG(SS_LOG_ERROR, p, "reports error %d: %s", f->error->code, f->error->message);
		if (p->state == PL_PULLING) {
			if (p->stream)
				fclose(p->stream);
			p->stream = NULL;
			pl_feed_lost(p);
			pl_set_state(p, PL_READY);
			pl_fail_sync(p, f->error->code, f->error->message);
		}
		return;
	default:
		break;
	}
	char why[96];
	snprintf(why, sizeof(why), "unexpected %s from parent", frame_msg_name(f));
	log_warning("%s", why);
	if (p->conn)
		conn_close(p->conn, SS_EPROTO, "%s", why);
	pl_lost(p, true, why);
}

/* Any site of the hierarchy holds a certificate from its CA: only the one
 * named in [parent] code is our parent. Checked before our Hello, so an
 * impostor learns nothing and gets no PullRequest or status. */
static bool pl_parent_pinned(parent_link_t *p)
{
	site_t *d = p->d;
	const char *peer = conn_peer_site(p->conn);
	const char *want = d->conf->parent_code;
	if (want == NULL || strcmp(peer, want) == 0)
		return true;
	char why[160];
	snprintf(why, sizeof(why), "refusing parent at %s: its certificate says site %s, "
	         "but [parent] code is %s", conn_peer_addr(p->conn), peer, want);
	log_error("%s", why);
	conn_close(p->conn, SS_EDENIED, "%s", why);
	pl_lost(p, true, why);
	return false;
}

static void pl_conn_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg)
{
	parent_link_t *p = arg;
	switch (ev) {
	case CONN_EV_UP:
		p->site[0] = '\0';
		if (!pl_parent_pinned(p))
			return;
		if (p->state != PL_APPLYING)
			pl_set_state(p, PL_HELLO);
		p->last_seen = time(NULL);
		conn_set_idle_timeout(c, p->d->conf->heartbeat_timeout);
		pl_send_hello(p);
		return;
	case CONN_EV_FRAME:
		pl_on_frame(p, f);
		return;
	case CONN_EV_DRAIN:
		return;
	case CONN_EV_DOWN:
		p->site[0] = p->site[0];
		pl_lost(p, true, "connection closed");
		return;
	}
}

static void pl_ping_cb(evutil_socket_t fd, short what, void *arg)
{
	parent_link_t *p = arg;
	if (p->conn == NULL || p->state < PL_READY)
		return;
	Sitesync__Ping ping = SITESYNC__PING__INIT;
	ping.nonce = ++p->nonce;
	ping.catalog_version = p->d->version;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PING;
	f.ping = &ping;
	pl_send(p, &f);
	/* Keep reported_at fresh upstream, so silence means trouble. */
	parent_link_report(p);
	/* A failed sync waits for next_retry; the ping timer notices when it passes. */
	parent_link_kick(p);
}

int parent_link_start(site_t *d, parent_link_t **out)
{
	parent_link_t *p = calloc(1, sizeof(*p));
	if (p == NULL)
		return SS_ENOMEM;
	p->d = d;
	snprintf(p->path, sizeof(p->path), "%s/pull.stream", d->conf->state_dir);
	snprintf(p->meta_path, sizeof(p->meta_path), "%s/pull.meta", d->conf->state_dir);
	char *list = strdup(d->conf->parent_address), *save = NULL;
	if (list == NULL)
		goto fail;
	for (char *t = strtok_r(list, ", ", &save); t && p->n_addrs < 4; t = strtok_r(NULL, ", ", &save))
		snprintf(p->addrs[p->n_addrs++], sizeof(p->addrs[0]), "%s", t);
	free(list);
	if (p->n_addrs == 0)
		goto fail;
	p->retry_ev = evtimer_new(d->base, pl_connect_cb, p);
	p->ping_ev = event_new(d->base, -1, EV_PERSIST, pl_ping_cb, p);
	if (p->retry_ev == NULL || p->ping_ev == NULL)
		goto fail;
	int every = d->conf->heartbeat_seconds < d->conf->poll_seconds ?
	            d->conf->heartbeat_seconds : d->conf->poll_seconds;
	struct timeval tv = { every, 0 };
	if (event_add(p->ping_ev, &tv) != 0)
		goto fail;
	pl_schedule_connect(p);
	*out = p;
	return SS_EOK;
fail:
	if (p->retry_ev)
		event_free(p->retry_ev);
	if (p->ping_ev)
		event_free(p->ping_ev);
	free(p);
	return SS_ENOMEM;
}

void parent_link_close(parent_link_t *p)
{
	if (p == NULL)
		return;
	p->freeing = true;
	if (p->feed) {
		p->feed_lost = true;
		stream_feed_abort(p->feed, SS_ETRUNC);
	}
	if (p->conn)
		conn_close(p->conn, 0, "shutting down");
	p->conn = NULL;
	if (p->stream)
		fclose(p->stream);
	p->stream = NULL;
	evtimer_del(p->retry_ev);
	event_del(p->ping_ev);
}

void parent_link_free(parent_link_t *p)
{
	if (p == NULL)
		return;
	parent_link_close(p);
	event_free(p->retry_ev);
	event_free(p->ping_ev);
	/* Called after the worker pool drained: no apply is in flight. */
	pl_apply_release(p);
	free(p);
}
