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
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <event2/event.h>
#include "proto/frame.h"
#include "proto/version.h"
#include "catalog/digest.h"
#include "net/conn.h"
#include "common/errcode.h"
#include "net/tls.h"

typedef struct {
	char id[37];
	uint8_t hash[SS_DIGEST_LEN];
	bool used;
} base_slot_t;

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
	digest_t digest;
	uint64_t bytes;
	double t_start, t_end;
	uint64_t upserts, deletes;
} light_t;

static struct event_base *base;
static base_map_t bmap;
static digest_t have_digest;
static uint64_t have_version;
static int live;

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
	while (cap < lines * 2 + 16)
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
	h.catalog_version = have_version;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_HELLO;
	f.hello = &h;
	if (conn_send(lc->conn, &f) != SS_EOK)
		lc_finish(lc, LC_FAILED, "send Hello");
}

static void lc_send_pull(light_t *lc)
{
	Sitesync__PullRequest r = SITESYNC__PULL_REQUEST__INIT;
	r.have_version = have_version;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PULL_REQUEST;
	f.pull_request = &r;
	lc->state = LC_PULLING;
	lc->digest = have_digest;
	if (conn_send(lc->conn, &f) != SS_EOK)
		lc_finish(lc, LC_FAILED, "send PullRequest");
}

static void lc_on_batch(light_t *lc, const Sitesync__Batch *b)
{
	uint8_t h[SS_DIGEST_LEN];
	for (size_t i = 0; i < b->n_entries && i < b->n_ids; i++) {
		base_slot_t *old = base_find(b->ids[i], false);
		if (old)
			digest_sum_sub(lc->digest.b, old->hash);
		digest_entry_hash(b->entries[i]->revision, b->entries[i]->content.data,
		                  b->entries[i]->content.len, h);
		digest_sum_add(lc->digest.b, h);
		lc->upserts++;
	}
	for (size_t i = 0; i < b->n_deletes; i++) {
		base_slot_t *old = base_find(b->deletes[i], false);
		if (old)
			digest_sum_sub(lc->digest.b, old->hash);
		lc->deletes++;
	}
}

static void lc_cb(conn_t *c, conn_event_t ev, const frame_t *f, void *arg)
{
	light_t *lc = arg;
	(void)c;
	switch (ev) {
	case CONN_EV_UP:
		conn_set_limit(lc->conn, SS_FRAME_DEFAULT_LIMIT);
		conn_set_idle_timeout(lc->conn, 0);
		lc->state = LC_HELLO;
		lc_send_hello(lc);
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
		    memcmp(d->digest.data, lc->digest.b, SS_DIGEST_LEN) == 0)
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
		default:
			fprintf(stderr, "Try --help\n");
			return 1;
		}
	}
	if (!parent || !ca || !certs || !sites || !digest_hex || !base_path ||
	    strlen(digest_hex) != 64 || unhex(digest_hex, have_digest.b, SS_DIGEST_LEN) != 0) {
		fprintf(stderr, "usage: lightchild --parent HOST:PORT --ca CA --certs DIR "
		        "--sites A00,A01 --have V --digest HEX --base FILE\n");
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
		char cert[4096], key[4096];
		snprintf(cert, sizeof(cert), "%s/%s.pem", certs, tok);
		snprintf(key, sizeof(key), "%s/%s.key", certs, tok);
		if (tls_ctx_new(ca, cert, key, 0, &lc->ctx, err, sizeof(err)) != SS_EOK) {
			fprintf(stderr, "%s: %s\n", tok, err);
			return 2;
		}
	}
	n = k;
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
