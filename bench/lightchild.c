/*
 * bench/lightchild: many light child sites in one process, for the fan-out
 * benchmark (bench/RESULTS.md, figure 4). Each one speaks the real protocol
 * over its own mutual-TLS connection (its own certificate): Hello, wait for
 * the parent's Hello (approval), PullRequest(have), then reads PullStart,
 * Batch... PullDone and checks the digest without a database: the digest
 * at `have` and the entry hash of every id at `have` are loaded once from a
 * file, shared read-only, and each child computes
 *   digest(have) - old hashes of touched ids + new entry hashes
 * and compares it with PullDone's. The digest so checked is the protocol-2
 * sum (the set digest needs the 2 KiB LtHash state per child and SHAKE128
 * per entry, which would make this process, not the parent, the subject of
 * figure 4), so each light child says it speaks protocol 2: a parent's
 * service to N-1 children is what figure 4 exercises.
 *
 *   lightchild --parent HOST:PORT --ca CA --certs DIR --sites A00,A01,...
 *              --have V --digest HEX --base FILE
 *
 * FILE: one line per entry at version V, "uuid hexhash". Prints one JSON
 * line: children, ok, failed, bytes, seconds (first connect to last
 * PullDone), per-child min/median/max seconds.
 *
 * --stay HEARTBEAT (figure 7, bench/hierarchy.py): the children are leaves
 * of a large hierarchy and stay connected. Each pulls to its parent's
 * version, then pulls every delta a SyncRequest announces, checks its
 * digest, and, like a real site, sends Ping + a StatusReport holding its
 * own SiteStatus row signed with its certificate's key every HEARTBEAT
 * seconds (first one at a random offset, as sites start at different
 * times) and at once when it reaches a version. It prints one line per
 * event on stdout, times on the wall clock so they compare with the
 * daemons' logs:
 *   up SITE T | reached SITE VERSION T | lost SITE T why | stats SENT_STATUS_BYTES REPORTS
 * and runs until SIGTERM. A lost link is dialled again after 1-3 s.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <signal.h>
#include <event2/event.h>
#include "proto/frame.h"
#include "proto/version.h"
#include "catalog/digest.h"
#include "net/conn.h"
#include "common/errcode.h"
#include "net/tls.h"
#include "replication/rowsig.h"

/* An entry's hash as of a later version (--stay): leaves at different
 * versions look up the hash they hold. del: removed at that version. */
typedef struct {
	uint64_t version;
	uint8_t hash[SS_DIGEST_LEN];
	bool del;
} hist_t;

typedef struct {
	char id[37];
	uint8_t hash[SS_DIGEST_LEN];
	bool used;
	bool in_base;
	hist_t *hist;                /* oldest first */
	size_t n_hist;
} base_slot_t;

/* One change of a pull in flight, applied to the shared history only once
 * the pull's digest checked out. */
typedef struct {
	base_slot_t *slot;
	uint8_t hash[SS_DIGEST_LEN];
	bool del;
} change_t;

typedef struct {
	base_slot_t *slots;
	size_t mask;
} base_map_t;

typedef enum { LC_CONNECTING, LC_HELLO, LC_PULLING, LC_DONE, LC_FAILED } lc_state_t;

typedef struct {
	/* set by main */
	char site[4];
	SSL_CTX *ctx;
	/* internal */
	conn_t *conn;
	lc_state_t state;
	digest_t digest;             /* at `have` */
	digest_t work;               /* of the pull in flight */
	uint64_t bytes;
	double t_start, t_end;
	uint64_t upserts, deletes;
	/* --stay */
	rowsig_t sig;
	char parent_site[4];
	uint64_t have, to_version, want, top_version;
	bool want_pull;
	change_t *chg;
	size_t n_chg, cap_chg;
	double next_hb;
	time_t sync_start, sync_end, reached_at;
	uint64_t rx_bytes;
	struct event *redial;
} light_t;

static struct event_base *base;
static base_map_t bmap;
static digest_t have_digest;
static uint64_t have_version;
static int live;
static int stay_hb;                /* --stay: heartbeat seconds, 0 = figure 4 mode */
static const char *parent_addr;
static time_t cert_expires;
static uint64_t status_bytes, status_reports;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static uint64_t fnv(const char *s)
{
	uint64_t h = 1469598103934665603ull;
	for (; *s; s++)
		h = (h ^ (uint8_t)*s) * 1099511628211ull;
	return h;
}

static base_slot_t *base_find(const char *id, bool insert)
{
	for (size_t i = fnv(id) & bmap.mask;; i = (i + 1) & bmap.mask) {
		base_slot_t *s = &bmap.slots[i];
		if (!s->used)
			return insert ? s : NULL;
		if (strcmp(s->id, id) == 0)
			return s;
	}
}

static int hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static int unhex(const char *s, uint8_t *out, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		int a = hexval(s[2 * i]), b = a < 0 ? -1 : hexval(s[2 * i + 1]);
		if (a < 0 || b < 0)
			return -1;
		out[i] = (uint8_t)(a << 4 | b);
	}
	return 0;
}

static int base_load(const char *path)
{
	FILE *f = fopen(path, "r");
	if (!f)
		return -errno;
	size_t lines = 0;
	char line[256];
	while (fgets(line, sizeof(line), f))
		lines++;
	size_t cap = 16;
	while (cap < lines * 2 + 4096)     /* room for ids added later (--stay) */
		cap <<= 1;
	bmap.slots = calloc(cap, sizeof(*bmap.slots));
	bmap.mask = cap - 1;
	if (!bmap.slots) {
		fclose(f);
		return -ENOMEM;
	}
	rewind(f);
	while (fgets(line, sizeof(line), f)) {
		char id[64], hex[80];
		if (sscanf(line, "%63s %79s", id, hex) != 2 || strlen(id) != 36 || strlen(hex) != 64)
			continue;
		base_slot_t *s = base_find(id, true);
		memcpy(s->id, id, 37);
		if (unhex(hex, s->hash, SS_DIGEST_LEN) != 0)
			continue;
		s->used = true;
		s->in_base = true;
	}
	fclose(f);
	return 0;
}

static void lc_finish(light_t *lc, lc_state_t st, const char *why)
{
	if (lc->state == LC_DONE || lc->state == LC_FAILED)
		return;
	lc->state = st;
	lc->t_end = now_s();
	if (st == LC_FAILED)
		fprintf(stderr, "lightchild %s: %s\n", lc->site, why);
	if (lc->conn) {
		conn_t *c = lc->conn;
		lc->conn = NULL;
		conn_close(c, 0, "done");
	}
	if (--live == 0)
		event_base_loopexit(base, NULL);
}

static void lc_send_hello(light_t *lc)
{
	Sitesync__Hello h = SITESYNC__HELLO__INIT;
	h.protocol_version = SS_PROTO_MIN_VERSION;     /* it checks the protocol-2 sum */
	h.site = lc->site;
	h.software_version = (char *)"bench-lightchild";
	h.catalog_version = lc->have;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_HELLO;
	f.hello = &h;
	if (conn_send(lc->conn, &f) != SS_EOK)
		lc_finish(lc, LC_FAILED, "send Hello");
}

static void lc_send_pull(light_t *lc)
{
	Sitesync__PullRequest r = SITESYNC__PULL_REQUEST__INIT;
	r.have_version = lc->have;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PULL_REQUEST;
	f.pull_request = &r;
	lc->state = LC_PULLING;
	lc->work = lc->digest;
	lc->n_chg = 0;
	lc->to_version = 0;
	lc->sync_start = time(NULL);
	if (conn_send(lc->conn, &f) != SS_EOK)
		lc_finish(lc, LC_FAILED, "send PullRequest");
}

/* The hash the entry had at version v, false if it was absent then. */
static bool hash_at(const base_slot_t *s, uint64_t v, const uint8_t **out)
{
	for (size_t i = s->n_hist; i-- > 0;)
		if (s->hist[i].version <= v) {
			*out = s->hist[i].hash;
			return !s->hist[i].del;
		}
	*out = s->hash;
	return s->in_base;
}

static void lc_note_change(light_t *lc, base_slot_t *slot, const uint8_t *h, bool del)
{
	if (!stay_hb || slot == NULL)
		return;
	if (lc->n_chg == lc->cap_chg) {
		size_t cap = lc->cap_chg ? 2 * lc->cap_chg : 128;
		change_t *n = realloc(lc->chg, cap * sizeof(*n));
		if (n == NULL)
			return;     /* then the history misses it and a later check fails loudly */
		lc->chg = n;
		lc->cap_chg = cap;
	}
	change_t *c = &lc->chg[lc->n_chg++];
	c->slot = slot;
	c->del = del;
	if (h)
		memcpy(c->hash, h, SS_DIGEST_LEN);
}

/* A checked pull's changes become the shared history at to_version (once,
 * whichever leaf checks it first). */
static void lc_commit_changes(light_t *lc)
{
	for (size_t i = 0; i < lc->n_chg; i++) {
		base_slot_t *s = lc->chg[i].slot;
		if (s->n_hist > 0 && s->hist[s->n_hist - 1].version >= lc->to_version)
			continue;
		hist_t *n = realloc(s->hist, (s->n_hist + 1) * sizeof(*n));
		if (n == NULL)
			continue;
		s->hist = n;
		n[s->n_hist].version = lc->to_version;
		n[s->n_hist].del = lc->chg[i].del;
		memcpy(n[s->n_hist].hash, lc->chg[i].hash, SS_DIGEST_LEN);
		s->n_hist++;
	}
	lc->n_chg = 0;
}

static void lc_on_batch(light_t *lc, const Sitesync__Batch *b)
{
	uint8_t h[SS_DIGEST_LEN];
	const uint8_t *oh;
	for (size_t i = 0; i < b->n_entries && i < b->n_ids; i++) {
		base_slot_t *old = base_find(b->ids[i], stay_hb != 0);
		if (old && !old->used) {
			/* An id new since the base (--stay only). */
			snprintf(old->id, sizeof(old->id), "%s", b->ids[i]);
			old->used = true;
		}
		if (old && hash_at(old, lc->have, &oh))
			digest_sum_sub(lc->work.b, oh);
		digest_entry_hash(b->entries[i]->revision, b->entries[i]->content.data,
		                  b->entries[i]->content.len, h);
		digest_sum_add(lc->work.b, h);
		lc_note_change(lc, old, h, false);
		lc->upserts++;
	}
	for (size_t i = 0; i < b->n_deletes; i++) {
		base_slot_t *old = base_find(b->deletes[i], false);
		if (old && hash_at(old, lc->have, &oh))
			digest_sum_sub(lc->work.b, oh);
		lc_note_change(lc, old, NULL, true);
		lc->deletes++;
	}
}

static double wall_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The leaf's own status row as a real site fills it (status_fill_self),
 * signed with its certificate's key; Ping first, as pl_ping_cb does. */
static void lc_report(light_t *lc, bool ping)
{
	if (lc->conn == NULL || lc->state != LC_DONE)
		return;
	frame_t f = SITESYNC__FRAME__INIT;
	if (ping) {
		Sitesync__Ping pg = SITESYNC__PING__INIT;
		pg.nonce = (uint64_t)random();
		pg.catalog_version = lc->have;
		f.msg_case = SITESYNC__FRAME__MSG_PING;
		f.ping = &pg;
		(void)conn_send(lc->conn, &f);
	}
	time_t now = time(NULL);
	Sitesync__SiteStatus row = SITESYNC__SITE_STATUS__INIT;
	row.site = lc->site;
	row.parent = lc->parent_site;
	row.sync_source = (char *)parent_addr;
	row.state = lc->sync_end ? SITESYNC__SYNC_STATE__SYNC_SUCCEEDED : SITESYNC__SYNC_STATE__SYNC_IDLE;
	row.last_sync_start = lc->sync_start;
	row.last_sync_end = lc->sync_end;
	row.catalog_version = lc->have;
	row.parent_version = lc->want > lc->have ? lc->want : lc->have;
	row.link = SITESYNC__LINK_STATE__LINK_ACTIVE;
	row.link_last_seen = now;
	row.changed = lc->upserts;
	row.removed = lc->deletes;
	row.software_version = (char *)"bench-lightchild";
	row.cert_expires = cert_expires;
	row.reported_at = now;
	row.version_reached_at = lc->reached_at;
	row.bytes_received = lc->rx_bytes;
	row.top_version = lc->top_version > lc->have ? lc->top_version : lc->have;
	row.behind_since = 0;
	row.last_sync_trigger = (char *)(lc->sync_end ? "parent" : "");
	size_t len = sitesync__site_status__get_packed_size(&row);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		return;
	sitesync__site_status__pack(&row, buf);
	Sitesync__SignedRow sr;
	int ret = rowsig_sign(&lc->sig, buf, len, &sr);
	free(buf);
	if (ret != SS_EOK) {
		fprintf(stderr, "lightchild %s: cannot sign its row\n", lc->site);
		return;
	}
	Sitesync__SignedRow *one = &sr;
	Sitesync__StatusReport rep = SITESYNC__STATUS_REPORT__INIT;
	rep.signed_rows = &one;
	rep.n_signed_rows = 1;
	frame_t sf = SITESYNC__FRAME__INIT;
	sf.msg_case = SITESYNC__FRAME__MSG_STATUS_REPORT;
	sf.status_report = &rep;
	status_bytes += SS_FRAME_HDR + sitesync__frame__get_packed_size(&sf);
	status_reports++;
	(void)conn_send(lc->conn, &sf);
	rowsig_signed_clear(&sr);
}

/* TLS is up: frames up to the default limit, no idle limit, say Hello. */
static void lc_on_up(light_t *lc)
{
	conn_set_limit(lc->conn, SS_FRAME_DEFAULT_LIMIT);
	conn_set_idle_timeout(lc->conn, 0);
	lc->state = LC_HELLO;
	lc_send_hello(lc);
}

static void lc_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg)
{
	light_t *lc = arg;
	(void)c;
	switch (ev) {
	case CONN_EV_UP:
		lc_on_up(lc);
		return;
	case CONN_EV_DRAIN:
		return;
	case CONN_EV_DOWN:
		lc->conn = NULL;
		lc_finish(lc, LC_FAILED, "connection closed before PullDone");
		return;
	case CONN_EV_FRAME:
		break;
	}
	switch (f->msg_case) {
	case SITESYNC__FRAME__MSG_HELLO:
		if (lc->state == LC_HELLO)
			lc_send_pull(lc);
		return;
	case SITESYNC__FRAME__MSG_BATCH:
		if (lc->state == LC_PULLING)
			lc_on_batch(lc, f->batch);
		return;
	case SITESYNC__FRAME__MSG_PULL_DONE: {
		const Sitesync__PullDone *d = f->pull_done;
		lc->bytes = conn_bytes_in(lc->conn);
		if (d->digest.len == SS_DIGEST_LEN &&
		    memcmp(d->digest.data, lc->work.b, SS_DIGEST_LEN) == 0)
			lc_finish(lc, LC_DONE, NULL);
		else
			lc_finish(lc, LC_FAILED, "digest mismatch");
		return;
	}
	case SITESYNC__FRAME__MSG_ERROR:
		lc_finish(lc, LC_FAILED, f->error->message ? f->error->message : "Error frame");
		return;
	default:
		return;     /* PullStart, SyncRequest, Pong, ... */
	}
}

/* --stay: a lost link is dialled again after 1-3 s, as a site's
 * parent link reconnects. */
static void lc_stay_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg);

static void lc_dial(light_t *lc)
{
	lc->state = LC_CONNECTING;
	if (conn_connect(base, NULL, lc->ctx, parent_addr, &lc->conn) != SS_EOK) {
		lc->conn = NULL;
		struct timeval tv = { 1 + random() % 3, 0 };
		evtimer_add(lc->redial, &tv);
		return;
	}
	conn_set_cb(lc->conn, lc_stay_cb, lc);
	conn_set_idle_timeout(lc->conn, 0);
}

static void redial_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	lc_dial(arg);
}

static void lc_lost(light_t *lc, const char *why)
{
	printf("lost %s %.3f %s\n", lc->site, wall_s(), why);
	if (lc->conn) {
		conn_t *c = lc->conn;
		lc->conn = NULL;
		conn_close(c, 0, "%s", why);
	}
	lc->state = LC_CONNECTING;
	lc->n_chg = 0;
	struct timeval tv = { 1 + random() % 3, 0 };
	evtimer_add(lc->redial, &tv);
}

static void lc_maybe_pull(light_t *lc)
{
	if (lc->state == LC_DONE && lc->want > lc->have)
		lc_send_pull(lc);
}

static void lc_stay_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg)
{
	light_t *lc = arg;
	(void)c;
	switch (ev) {
	case CONN_EV_UP:
		lc_on_up(lc);
		return;
	case CONN_EV_DRAIN:
		return;
	case CONN_EV_DOWN:
		lc->conn = NULL;
		/* Where it went down says why: refused, the handshake, or later. */
		lc_lost(lc, lc->state == LC_CONNECTING ? "connection closed before TLS was up" :
		            lc->state == LC_HELLO ? "connection closed before Hello" :
		            lc->state == LC_PULLING ? "connection closed during a pull" :
		            "connection closed");
		return;
	case CONN_EV_FRAME:
		break;
	}
	switch (f->msg_case) {
	case SITESYNC__FRAME__MSG_HELLO: {
		const Sitesync__Hello *h = f->hello;
		if (lc->state != LC_HELLO)
			return;
		snprintf(lc->parent_site, sizeof(lc->parent_site), "%s", h->site ? h->site : "");
		if (h->catalog_version > lc->want)
			lc->want = h->catalog_version;
		if (h->top_version > lc->top_version)
			lc->top_version = h->top_version;
		lc->state = LC_DONE;
		printf("up %s %.3f\n", lc->site, wall_s());
		lc_maybe_pull(lc);
		if (lc->state == LC_DONE)
			lc_report(lc, false);
		return;
	}
	case SITESYNC__FRAME__MSG_SYNC_REQUEST: {
		const Sitesync__SyncRequest *r = f->sync_request;
		if (r->version > lc->want)
			lc->want = r->version;
		if (r->top_version > lc->top_version)
			lc->top_version = r->top_version;
		lc_maybe_pull(lc);
		return;
	}
	case SITESYNC__FRAME__MSG_PULL_START:
		if (lc->state != LC_PULLING)
			return;
		if (f->pull_start->full) {
			lc_lost(lc, "parent sent a full snapshot (a light leaf holds deltas only)");
			return;
		}
		lc->to_version = f->pull_start->to_version;
		return;
	case SITESYNC__FRAME__MSG_BATCH:
		if (lc->state == LC_PULLING)
			lc_on_batch(lc, f->batch);
		return;
	case SITESYNC__FRAME__MSG_PULL_DONE: {
		const Sitesync__PullDone *d = f->pull_done;
		if (lc->state != LC_PULLING)
			return;
		lc->rx_bytes = conn_bytes_in(lc->conn);
		if (d->digest.len != SS_DIGEST_LEN ||
		    memcmp(d->digest.data, lc->work.b, SS_DIGEST_LEN) != 0) {
			printf("fail %s %.3f digest mismatch at version %" PRIu64 "\n", lc->site,
			       wall_s(), d->version);
			lc_lost(lc, "digest mismatch");
			return;
		}
		if (lc->to_version == 0)
			lc->to_version = d->version;
		lc_commit_changes(lc);
		lc->have = d->version;
		lc->digest = lc->work;
		lc->reached_at = lc->sync_end = time(NULL);
		lc->state = LC_DONE;
		printf("reached %s %" PRIu64 " %.3f\n", lc->site, lc->have, wall_s());
		lc_maybe_pull(lc);
		if (lc->state == LC_DONE)
			lc_report(lc, false);   /* a real site reports a commit at once */
		return;
	}
	case SITESYNC__FRAME__MSG_ERROR:
		printf("error %s %.3f %s\n", lc->site, wall_s(),
		       f->error->message ? f->error->message : "");
		return;
	default:
		return;     /* Pong */
	}
}

/* Every 100 ms: the leaves whose heartbeat is due ping and report (not
 * while pulling: they report when the pull is done). */
static void hb_cb(evutil_socket_t fd, short what, void *arg)
{
	light_t *lcs = arg;
	(void)fd;
	(void)what;
	double now = now_s();
	for (light_t *lc = lcs; lc->site[0]; lc++) {
		if (lc->state != LC_DONE || now < lc->next_hb)
			continue;
		lc_report(lc, true);
		while (lc->next_hb <= now)
			lc->next_hb += stay_hb;
	}
	static double last_stats;
	if (now - last_stats >= stay_hb) {
		printf("stats %" PRIu64 " %" PRIu64 " %.3f\n", status_bytes, status_reports, wall_s());
		last_stats = now;
	}
}

static void term_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	(void)arg;
	printf("stats %" PRIu64 " %" PRIu64 " %.3f\n", status_bytes, status_reports, wall_s());
	event_base_loopexit(base, NULL);
}

static int stay_run(light_t *lcs, size_t n, const char *ca, const char *certs)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	srandom((unsigned)getpid());
	char cert[4096], key[4096], err[256];
	for (size_t i = 0; i < n; i++) {
		light_t *lc = &lcs[i];
		snprintf(cert, sizeof(cert), "%s/%s.pem", certs, lc->site);
		snprintf(key, sizeof(key), "%s/%s.key", certs, lc->site);
		if (rowsig_init(&lc->sig, ca, cert, key, err, sizeof(err)) != SS_EOK) {
			fprintf(stderr, "%s: %s\n", lc->site, err);
			return 2;
		}
		if (i == 0)
			cert_expires = tls_cert_expiry(cert);
		lc->redial = evtimer_new(base, redial_cb, lc);
		lc->next_hb = now_s() + (double)(random() % (stay_hb * 1000)) / 1000.0;
		lc_dial(lc);
	}
	struct timeval tick = { 0, 100000 };
	struct event *hb = event_new(base, -1, EV_PERSIST, hb_cb, lcs);
	struct event *term = evsignal_new(base, SIGTERM, term_cb, NULL);
	event_add(hb, &tick);
	event_add(term, NULL);
	event_base_dispatch(base);
	event_free(hb);
	event_free(term);
	for (size_t i = 0; i < n; i++) {
		if (lcs[i].conn)
			conn_close(lcs[i].conn, 0, "done");
		event_free(lcs[i].redial);
		rowsig_clear(&lcs[i].sig);
		free(lcs[i].chg);
		SSL_CTX_free(lcs[i].ctx);
	}
	return 0;
}

/* The parent drops a link silent for longer than its heartbeat timeout,
 * and a queued pull (max_concurrent_pulls) may wait: --ping-secs N pings
 * while pulling. Off by default: a Pong the parent queues while it streams
 * raw spooled chunks lands inside a frame (see bench/RESULTS.md), so the
 * benchmark raises the parent's heartbeat_timeout instead. */
static int ping_secs;
static void ping_cb(evutil_socket_t fd, short what, void *arg)
{
	light_t *lcs = arg;
	(void)fd;
	(void)what;
	Sitesync__Ping p = SITESYNC__PING__INIT;
	p.catalog_version = have_version;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PING;
	f.ping = &p;
	for (light_t *lc = lcs; lc->site[0]; lc++)
		if (lc->conn && lc->state == LC_PULLING)   /* never before approval */
			(void)conn_send(lc->conn, &f);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
	const char *parent = NULL, *ca = NULL, *certs = NULL, *sites = NULL,
	           *digest_hex = NULL, *base_path = NULL;
	static const struct option opts[] = {
		{ "parent", required_argument, NULL, 'p' }, { "ca", required_argument, NULL, 'a' },
		{ "certs", required_argument, NULL, 'c' }, { "sites", required_argument, NULL, 's' },
		{ "have", required_argument, NULL, 'v' }, { "digest", required_argument, NULL, 'd' },
		{ "base", required_argument, NULL, 'b' }, { "ping-secs", required_argument, NULL, 'i' },
		{ "stay", required_argument, NULL, 'S' },
		{ NULL, 0, NULL, 0 } };
	int o;
	while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (o) {
		case 'p': parent = optarg; break;
		case 'a': ca = optarg; break;
		case 'c': certs = optarg; break;
		case 's': sites = optarg; break;
		case 'v': have_version = strtoull(optarg, NULL, 10); break;
		case 'd': digest_hex = optarg; break;
		case 'b': base_path = optarg; break;
		case 'i': ping_secs = atoi(optarg); break;
		case 'S': stay_hb = atoi(optarg); break;
		default:
			fprintf(stderr, "Try --help\n");
			return 1;
		}
	}
	if (!parent || !ca || !certs || !sites || !digest_hex || !base_path ||
	    strlen(digest_hex) != 64 || unhex(digest_hex, have_digest.b, SS_DIGEST_LEN) != 0) {
		fprintf(stderr, "usage: lightchild --parent HOST:PORT --ca CA --certs DIR "
		        "--sites A00,A01 --have V --digest HEX --base FILE [--stay HEARTBEAT]\n");
		return 1;
	}
	if (base_load(base_path) != 0) {
		fprintf(stderr, "cannot read %s\n", base_path);
		return 2;
	}
	base = event_base_new();
	size_t n = 1;
	for (const char *p = sites; *p; p++)
		n += *p == ',';
	light_t *lcs = calloc(n + 1, sizeof(*lcs));    /* site "" ends it */
	char *list = strdup(sites), *save = NULL;
	size_t k = 0;
	char err[256];
	for (char *tok = strtok_r(list, ",", &save); tok && k < n; tok = strtok_r(NULL, ",", &save)) {
		light_t *lc = &lcs[k++];
		snprintf(lc->site, sizeof(lc->site), "%s", tok);
		lc->have = have_version;
		lc->digest = have_digest;
		char cert[4096], key[4096];
		snprintf(cert, sizeof(cert), "%s/%s.pem", certs, tok);
		snprintf(key, sizeof(key), "%s/%s.key", certs, tok);
		if (tls_ctx_new(ca, cert, key, 0, &lc->ctx, err, sizeof(err)) != SS_EOK) {
			fprintf(stderr, "%s: %s\n", tok, err);
			return 2;
		}
	}
	n = k;
	parent_addr = parent;
	if (stay_hb > 0) {
		int rc = stay_run(lcs, n, ca, certs);
		for (size_t i = 0; i <= bmap.mask; i++)
			free(bmap.slots[i].hist);
		free(bmap.slots);
		free(list);
		free(lcs);
		event_base_free(base);
		return rc;
	}
	double t0 = now_s();
	live = (int)n;
	for (size_t i = 0; i < n; i++) {
		lcs[i].t_start = now_s();
		if (conn_connect(base, NULL, lcs[i].ctx, parent, &lcs[i].conn) != SS_EOK) {
			lcs[i].conn = NULL;
			lc_finish(&lcs[i], LC_FAILED, "connect");
			continue;
		}
		conn_set_cb(lcs[i].conn, lc_cb, &lcs[i]);
		/* A queued pull (max_concurrent_pulls) waits in silence. */
		conn_set_idle_timeout(lcs[i].conn, 0);
	}
	struct timeval every = { ping_secs, 0 };
	struct event *ping = event_new(base, -1, EV_PERSIST, ping_cb, lcs);
	if (ping_secs > 0)
		event_add(ping, &every);
	if (live > 0)
		event_base_dispatch(base);
	event_free(ping);
	double t1 = t0;
	uint64_t bytes = 0;
	size_t ok = 0;
	double *dur = calloc(n ? n : 1, sizeof(double));
	uint64_t ups = 0, dels = 0;
	for (size_t i = 0; i < n; i++) {
		if (lcs[i].state != LC_DONE)
			continue;
		dur[ok++] = lcs[i].t_end - lcs[i].t_start;
		bytes += lcs[i].bytes;
		ups = lcs[i].upserts;
		dels = lcs[i].deletes;
		if (lcs[i].t_end > t1)
			t1 = lcs[i].t_end;
	}
	qsort(dur, ok, sizeof(double), cmp_double);
	printf("{\"children\": %zu, \"ok\": %zu, \"failed\": %zu, \"bytes\": %" PRIu64
	       ", \"seconds\": %.4f, \"upserts\": %" PRIu64 ", \"deletes\": %" PRIu64
	       ", \"child_min\": %.4f, \"child_median\": %.4f, \"child_max\": %.4f}\n",
	       n, ok, n - ok, bytes, t1 - t0, ups, dels, ok ? dur[0] : 0.0,
	       ok ? dur[ok / 2] : 0.0, ok ? dur[ok - 1] : 0.0);
	for (size_t i = 0; i < n; i++)
		if (lcs[i].ctx)
			SSL_CTX_free(lcs[i].ctx);
	free(dur);
	free(list);
	free(lcs);
	free(bmap.slots);
	event_base_free(base);
	return ok == n ? 0 : 2;
}
