/* Staging a catalog: a parser thread and a writer thread. */
#include "upstream/stage.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/sitesync.pb-c.h"
#include "catalog/digest.h"
#include "catalog/entry.h"
#include "catalog/stream.h"
#include "common/errcode.h"
#include "common/log.h"
#include "storage/copy.h"
#include "storage/db.h"
#include "storage/handoff.h"
#include "upstream/catalog.h"
#include "upstream/expire.h"
#include "upstream/remote.h"
#include "upstream/wsus.h"

#define META_FLUSH_BYTES (1u << 20)
#define BATCH_BYTES (1u << 20)
#define BATCHES 4
/* First sync: packages held back before writing (see stage_window_t). */
#define WINDOW 2048

/*
 * The stage: one row per package in catalog order (seq; of duplicates
 * the first wins), its queryable columns, its packed content and where
 * the expired and source fields sit in it (upstream_expire_split), and its
 * entry hash at revision 1 as staged (hash1): an added entry whose bytes
 * stay as staged needs no hashing in SQL. Loaded with binary COPY: no
 * escaping, and content is not hex-encoded. Content is compressed once,
 * here, with the session's codec (lz4 where the server has it,
 * storage/db.c), and inserted into updates as it is. A first sync into an
 * empty catalog stages no content: its rows went to updates (first.h).
 */
#define SQL_STAGE_TABLE \
	"CREATE TEMP TABLE ss_up (seq integer NOT NULL, update_id uuid NOT NULL, " \
	"title text NOT NULL, vendor text NOT NULL, products text[] NOT NULL, " \
	"classification text NOT NULL, languages text[] NOT NULL, severity text NOT NULL, " \
	"kb_article text NOT NULL, release_date text NOT NULL, expired boolean NOT NULL, " \
	"source text NOT NULL, supersedes text[] NOT NULL, content bytea NOT NULL, " \
	"cut integer NOT NULL, exp_len integer NOT NULL, src_len integer NOT NULL, " \
	"hash1 bytea NOT NULL) ON COMMIT DROP"
#define STAGE_COPY "COPY ss_up (seq, update_id, title, vendor, products, classification, " \
	"languages, severity, kb_article, release_date, expired, source, supersedes, content, " \
	"cut, exp_len, src_len, hash1) FROM STDIN (FORMAT binary)"
#define STAGE_FIELDS 18

/* One package as the parser hands it to the writer; content and the
 * encoded column fields (entry_copy_fields) follow it in the batch. */
typedef struct {
	uint8_t uuid[16];
	uint32_t split[3];
	uint32_t content_len;
	uint32_t fields_len;
	bool take;                 /* first sync: selected, the first of its id: to updates */
} stage_rec_t;

/*
 * First sync: the last WINDOW packages parsed, not yet handed to the
 * writer. A package that supersedes one still here (or one parsed before
 * it, any distance back) expires it before it is written; expiry found
 * further apart is amended in place after the parse (first_sync_commit).
 * Catalogs list a supersedence close to the update it replaces, so few
 * rows are written twice. Every package passes through, in order: the
 * stage's seq stays the catalog's order.
 */
typedef struct {
	stage_rec_t r;
	uint8_t *buf;             /* content, then the encoded fields */
	size_t cap;
	bool parsed_expired;
	bool expire;              /* the verdict so far (taken packages) */
	int32_t next;             /* bucket chain */
} win_slot_t;

typedef struct {
	win_slot_t slots[WINDOW];
	int32_t buckets[2 * WINDOW];
	size_t head, count;
	idset_t superseded;       /* ids expired by a package taken so far */
	uint8_t *flip;            /* scratch for amended content */
	size_t flip_cap;
} stage_window_t;

typedef struct {
	PGconn *conn;
	upstream_job_t *job;
	first_sync_t *first;      /* set: selected rows go to updates, the stage gets no content */
	/* writer side */
	copybuf_t cb;
	uint64_t staged;
	/* parser side */
	uint64_t packaged;         /* packages handed on: the next one's seq */
	const char *from_url;      /* the catalog being parsed ([upstream] or a source) */
	copybuf_t fields;
	uint8_t *packed;
	size_t packed_cap;
	handoff_buf_t *cur;        /* the batch being filled */
	handoff_t *pipe;           /* to the writer thread */
	stage_window_t *win;      /* first sync only */
} stage_ctx_t;

/* Writer: one package's rows (stage, and updates on a first sync). */
static int stage_put(stage_ctx_t *s, const stage_rec_t *r, const uint8_t *content,
                     const uint8_t *fields, char *err, size_t errlen)
{
	first_sync_t *f = s->first;
	uint8_t h1[SS_DIGEST_LEN];
	if (f == NULL || r->take)
		digest_entry_hash(1, content, r->content_len, h1);
	else
		memset(h1, 0, sizeof(h1));   /* never written to updates */
	copybuf_t *cb = &s->cb;
	if (f != NULL && r->take) {
		copy_bin_row(cb, ENTRY_COPY_FIELDS);
		copy_bin_uuid(cb, r->uuid);
		copy_bin_int4(cb, 1);
		copy_bin_raw(cb, fields, r->fields_len);
		copy_bin_bytes(cb, h1, sizeof(h1));
		copy_bin_bytes(cb, content, r->content_len);
		f->written++;
	}
	copybuf_t *sb = f != NULL ? &f->meta_cb : cb;
	copy_bin_row(sb, STAGE_FIELDS);
	copy_bin_int4(sb, (int32_t)s->staged);
	copy_bin_uuid(sb, r->uuid);
	copy_bin_raw(sb, fields, r->fields_len);
	copy_bin_bytes(sb, content, f != NULL ? 0 : r->content_len);
	for (int i = 0; i < 3; i++)
		copy_bin_int4(sb, (int32_t)r->split[i]);
	copy_bin_bytes(sb, h1, sizeof(h1));
	s->staged++;
	int ret = f != NULL ? first_sync_meta_flush(f, META_FLUSH_BYTES, err, errlen) : SS_EOK;
	if (ret == SS_EOK)
		ret = copy_flush(s->conn, cb, COPY_PIECE_BYTES, err, errlen);
	return ret;
}

/* Writer thread: a batch of packages from the parser. */
static int stage_put_batch(void *arg, const handoff_buf_t *b, char *err, size_t errlen)
{
	stage_ctx_t *s = arg;
	size_t off = 0;
	while (off < b->len) {
		stage_rec_t r;
		memcpy(&r, b->buf + off, sizeof(r));
		const uint8_t *content = b->buf + off + sizeof(r);
		int ret = stage_put(s, &r, content, content + r.content_len, err, errlen);
		if (ret != SS_EOK)
			return ret;
		off += sizeof(r) + r.content_len + r.fields_len;
	}
	return SS_EOK;
}

/* Send what is left (unless \a ok is false), stop the writer. */
static int stage_pipe_finish(stage_ctx_t *s, bool ok)
{
	int ret = SS_EOK;
	if (ok && s->cur->len > 0)
		ret = handoff_push(s->pipe, &s->cur, NULL, 0);
	char msg[256] = "";
	int fin = handoff_finish(s->pipe, !ok || ret != SS_EOK, msg, sizeof(msg));
	if (fin != SS_EOK && s->job->err[0] == '\0')
		snprintf(s->job->err, sizeof(s->job->err), "%s", msg);
	s->pipe = NULL;
	s->cur = NULL;
	return ret != SS_EOK ? ret : fin;
}

static int stage_emit(stage_ctx_t *s, const stage_rec_t *rec, const uint8_t *content,
                      const uint8_t *fields);

/* Make *buf hold at least need bytes (contents kept). */
static int stage_grow(uint8_t **buf, size_t *cap, size_t need)
{
	if (need <= *cap)
		return SS_EOK;
	uint8_t *nb = realloc(*buf, need ? need : 1);
	if (nb == NULL)
		return SS_ENOMEM;
	*buf = nb;
	*cap = need;
	return SS_EOK;
}

static size_t window_bucket(const uint8_t id[16])
{
	return (size_t)idset_hash(id) & (2 * WINDOW - 1);
}

static win_slot_t *window_find(stage_window_t *w, const uint8_t id[16])
{
	for (int32_t i = w->buckets[window_bucket(id)]; i >= 0; i = w->slots[i].next)
		if (memcmp(w->slots[i].r.uuid, id, 16) == 0)
			return &w->slots[i];
	return NULL;
}

static stage_window_t *window_new(void)
{
	stage_window_t *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	for (size_t i = 0; i < 2 * WINDOW; i++)
		w->buckets[i] = -1;
	idset_init(&w->superseded);
	return w;
}

static void window_free(stage_window_t *w)
{
	if (w == NULL)
		return;
	for (size_t i = 0; i < WINDOW; i++)
		free(w->slots[i].buf);
	idset_clear(&w->superseded);
	free(w->flip);
	free(w);
}

/* Offset of the expired flag's byte in fields from entry_copy_fields(). */
static bool fields_expired_at(const uint8_t *f, size_t n, size_t *at)
{
	size_t off = 0;
	for (int i = 0; i < ENTRY_FIELD_EXPIRED; i++) {
		if (n - off < 4)
			return false;
		uint32_t len = (uint32_t)f[off] << 24 | (uint32_t)f[off + 1] << 16 |
		               (uint32_t)f[off + 2] << 8 | f[off + 3];
		if (len > n - off - 4)
			return false;
		off += 4 + len;
	}
	if (n - off < 5 || f[off] || f[off + 1] || f[off + 2] || f[off + 3] != 1)
		return false;
	*at = off + 4;
	return true;
}

/* The oldest package leaves the window for the writer, amended if its
 * expiry is settled otherwise than the catalog said. */
static int window_pop(stage_ctx_t *s)
{
	stage_window_t *w = s->win;
	size_t idx = w->head;
	win_slot_t *e = &w->slots[idx];
	w->head = (w->head + 1) % WINDOW;
	w->count--;
	if (e->r.take) {
		int32_t *link = &w->buckets[window_bucket(e->r.uuid)];
		while (*link >= 0 && (size_t)*link != idx)
			link = &w->slots[*link].next;
		if (*link >= 0)
			*link = e->next;
	}
	stage_rec_t r = e->r;
	const uint8_t *content = e->buf;
	uint8_t *fields = e->buf + r.content_len;
	size_t at;
	/* Only our own encoding (flag absent when false) is amended here. */
	if (r.take && e->expire != e->parsed_expired && r.split[1] == (e->parsed_expired ? 3u : 0u) &&
	    fields_expired_at(fields, r.fields_len, &at)) {
		if (stage_grow(&w->flip, &w->flip_cap, (size_t)r.content_len + 3) != SS_EOK)
			return SS_ENOMEM;
		r.content_len = (uint32_t)upstream_expire_flip(content, r.content_len, r.split,
		                                               e->expire, w->flip);
		r.split[1] = e->expire ? 3 : 0;
		fields[at] = e->expire ? 1 : 0;
		content = w->flip;
	}
	return stage_emit(s, &r, content, fields);
}

static int window_drain(stage_ctx_t *s)
{
	int ret = SS_EOK;
	while (ret == SS_EOK && s->win->count > 0)
		ret = window_pop(s);
	return ret;
}

static int window_add(stage_ctx_t *s, const Sitesync__UpdateContent *u, const stage_rec_t *r,
                      const uint8_t *content, const uint8_t *fields)
{
	stage_window_t *w = s->win;
	if (r->take && first_sync_supersedes(s->first, u)) {
		/* As expire.c: lower(id), never the package itself. */
		for (size_t i = 0; i < u->n_supersedes; i++) {
			const char *x = u->supersedes[i];
			char id[37];
			if (x == NULL || strlen(x) != 36)
				continue;
			for (int k = 0; k < 37; k++)
				id[k] = (char)(x[k] >= 'A' && x[k] <= 'Z' ? x[k] + 32 : x[k]);
			if (!entry_id_valid(id))
				continue;
			uint8_t xb[16];
			entry_id_bytes(id, xb);
			if (memcmp(xb, r->uuid, 16) == 0)
				continue;
			if (idset_add(&w->superseded, xb) < 0)
				return SS_ENOMEM;
			win_slot_t *t = window_find(w, xb);
			if (t != NULL)
				t->expire = true;
		}
	}
	if (w->count == WINDOW) {
		int ret = window_pop(s);
		if (ret != SS_EOK)
			return ret;
	}
	size_t idx = (w->head + w->count) % WINDOW;
	win_slot_t *e = &w->slots[idx];
	if (stage_grow(&e->buf, &e->cap, (size_t)r->content_len + r->fields_len) != SS_EOK)
		return SS_ENOMEM;
	memcpy(e->buf, content, r->content_len);
	memcpy(e->buf + r->content_len, fields, r->fields_len);
	e->r = *r;
	e->parsed_expired = u->expired;
	/* As expire.c: expired means superseded, whatever the catalog said. */
	e->expire = r->take && idset_has(&w->superseded, r->uuid);
	e->next = -1;
	if (r->take) {
		size_t b = window_bucket(r->uuid);
		e->next = w->buckets[b];
		w->buckets[b] = (int32_t)idx;
	}
	w->count++;
	return SS_EOK;
}

static int stage_pack(stage_ctx_t *s, const Sitesync__UpdateContent *u, size_t *len)
{
	size_t n = sitesync__update_content__get_packed_size(u);
	if (stage_grow(&s->packed, &s->packed_cap, n) != SS_EOK)
		return SS_ENOMEM;
	sitesync__update_content__pack(u, s->packed);
	*len = n;
	return SS_EOK;
}

/* Parser: one package, whose packed form is \a content, to the writer. */
static int stage_package(stage_ctx_t *s, const Sitesync__UpdateContent *u,
                         const uint8_t *content, size_t len)
{
	stage_rec_t r;
	memset(&r, 0, sizeof(r));
	if (!upstream_expire_split(content, len, r.split)) {
		/* Not in field order (another encoder): ours is. */
		int ret = stage_pack(s, u, &len);
		if (ret != SS_EOK)
			return ret;
		content = s->packed;
		if (!upstream_expire_split(content, len, r.split))
			return SS_EMALF;
	}
	if (len > UINT32_MAX)
		return SS_ETOOBIG;
	/* Every site below must take it whole, in one Batch: refused here,
	 * before anything is committed, by name and source. */
	if (s->job->max_entry_bytes > 0 && len > s->job->max_entry_bytes) {
		char shown[512];
		log_url_redact(s->from_url, shown, sizeof(shown));
		snprintf(s->job->err, sizeof(s->job->err), "entry %.40s from %s is %zu bytes, over the "
		         "limit of %zu ([upstream] max_entry_bytes); nothing was changed",
		         u->update_id, shown, len, s->job->max_entry_bytes);
		return SS_ETOOBIG;
	}
	entry_id_bytes(u->update_id, r.uuid);
	r.take = s->first == NULL;
	if (s->first != NULL && first_sync_selected(s->first, u)) {
		int added = idset_add(&s->first->ids, r.uuid);
		if (added < 0)
			return added;
		r.take = added == 1;
	}
	s->fields.len = 0;
	entry_copy_fields(&s->fields, u);
	/* Each package handed on becomes one stage row, in order (window_add
	 * keeps the order), so this is its seq: where its source's range is. */
	s->packaged++;
	r.content_len = (uint32_t)len;
	r.fields_len = (uint32_t)s->fields.len;
	if (s->win != NULL)
		return window_add(s, u, &r, content, (const uint8_t *)s->fields.buf);
	return stage_emit(s, &r, content, (const uint8_t *)s->fields.buf);
}

/* Parser: a package to the writer (or written here, without a writer). */
static int stage_emit(stage_ctx_t *s, const stage_rec_t *rec, const uint8_t *content,
                      const uint8_t *fields)
{
	stage_rec_t r = *rec;
	size_t len = r.content_len;
	if (s->pipe == NULL)
		return stage_put(s, &r, content, fields, s->job->err, sizeof(s->job->err));
	handoff_buf_t *b = s->cur;
	size_t need = sizeof(r) + len + r.fields_len;
	if (b->len > 0 && b->len + need > b->cap) {
		int ret = handoff_push(s->pipe, &s->cur, NULL, 0);
		if (ret != SS_EOK)
			return ret;
		b = s->cur;
	}
	/* One package larger than a batch: this batch grows for it. */
	if (stage_grow(&b->buf, &b->cap, need) != SS_EOK)
		return SS_ENOMEM;
	memcpy(b->buf + b->len, &r, sizeof(r));
	memcpy(b->buf + b->len + sizeof(r), content, len);
	memcpy(b->buf + b->len + sizeof(r) + len, fields, r.fields_len);
	b->len += need;
	return SS_EOK;
}

static int stage_entry_cb(const Sitesync__UpdateContent *u, void *arg)
{
	stage_ctx_t *s = arg;
	Sitesync__UpdateContent imp;
	if (s->job->import_id != NULL) {
		/* An import takes one package; the rest only count as parsed. */
		atomic_fetch_add(&s->job->parsed, 1);
		if (strcasecmp(u->update_id, s->job->import_id) != 0)
			return SS_EOK;
		/* A shallow copy: only source differs, the strings stay the parser's. */
		imp = *u;
		imp.source = "imported";
		u = &imp;
	}
	if (!entry_id_valid(u->update_id)) {
		snprintf(s->job->err, sizeof(s->job->err), "package %.40s has an invalid id", u->update_id);
		return SS_EMALF;
	}
	size_t n = 0;
	int ret = stage_pack(s, u, &n);
	if (ret == SS_EOK)
		ret = stage_package(s, u, s->packed, n);
	if (ret == SS_EOK && s->job->import_id == NULL)
		atomic_fetch_add(&s->job->parsed, 1);
	return ret;
}

/* The entries of a snapshot pulled from a sitesync:// upstream, staged
 * like a catalog's packages (their content bytes are kept as received). */
static int stage_stream(stage_ctx_t *s, const char *path, catalog_stats_t *stats)
{
	upstream_job_t *job = s->job;
	stream_reader_t rd;
	int ret = stream_reader_open(&rd, path, job->max_frame ? job->max_frame : SS_FRAME_DEFAULT_LIMIT);
	if (ret != SS_EOK) {
		snprintf(job->err, sizeof(job->err), "cannot read the upstream snapshot: %s", ss_strerror(ret));
		return ret;
	}
	bool done = false;
	while (ret == SS_EOK && !done) {
		frame_t *f = NULL;
		ret = stream_reader_next(&rd, &f);
		if (ret != SS_EOK) {
			snprintf(job->err, sizeof(job->err), "upstream snapshot: %s",
			         ret == 1 ? "ends before PullDone" : ss_strerror(ret));
			ret = ret == 1 ? SS_ETRUNC : ret;
			break;
		}
		if (f->msg_case == SITESYNC__FRAME__MSG_BATCH) {
			Sitesync__Batch *b = f->batch;
			for (size_t i = 0; ret == SS_EOK && i < b->n_entries && i < b->n_ids; i++) {
				const ProtobufCBinaryData *c = &b->entries[i]->content;
				Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, c->len, c->data);
				if (u == NULL || !entry_id_valid(b->ids[i]) || strcmp(u->update_id, b->ids[i]) != 0)
					ret = SS_EMALF;
				else
					ret = stage_package(s, u, c->data, c->len);
				sitesync__update_content__free_unpacked(u, NULL);
				if (ret != SS_EOK) {
					if (ret == SS_EMALF)
						snprintf(job->err, sizeof(job->err), "upstream entry %.40s does not decode",
						         b->ids[i]);
					break;
				}
				stats->entries++;
				atomic_fetch_add(&job->parsed, 1);
			}
		} else if (f->msg_case == SITESYNC__FRAME__MSG_PULL_DONE) {
			done = true;
		}
		frame_free(f);
	}
	stats->bytes = rd.offset;
	stream_reader_close(&rd);
	return ret;
}

/* The entries a WSUS upstream gave (upstream/wsus.c records), staged like
 * a catalog's packages. */
static int stage_wsus(stage_ctx_t *s, const char *path, catalog_stats_t *stats)
{
	upstream_job_t *job = s->job;
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(job->err, sizeof(job->err), "cannot read the WSUS entries: %s", strerror(errno));
		return SS_EIO;
	}
	uint8_t *buf = NULL;
	size_t cap = 0, len = 0;
	int ret;
	while ((ret = wsus_record_next(f, &buf, &cap, &len)) == SS_EOK) {
		Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, len, buf);
		if (u == NULL || !entry_id_valid(u->update_id)) {
			snprintf(job->err, sizeof(job->err), "a WSUS entry does not decode");
			ret = SS_EMALF;
		} else {
			ret = stage_package(s, u, buf, len);
		}
		sitesync__update_content__free_unpacked(u, NULL);
		if (ret != SS_EOK)
			break;
		stats->entries++;
		stats->bytes += len;
		atomic_fetch_add(&job->parsed, 1);
	}
	if (ret == 1)
		ret = SS_EOK;
	else if (ret != SS_EOK && job->err[0] == '\0')
		snprintf(job->err, sizeof(job->err), "cannot read the WSUS entries: %s", ss_strerror(ret));
	free(buf);
	fclose(f);
	return ret;
}

int upstream_stage_catalog(PGconn *conn, upstream_job_t *job, const char *path,
                           first_sync_t *first)
{
	stage_ctx_t s = { .conn = conn, .job = job, .first = first, .from_url = job->url };
	copy_init(&s.cb);
	copy_init(&s.fields);
	int ret = db_exec(conn, SQL_STAGE_TABLE, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		goto out;
	if (first != NULL && (s.win = window_new()) == NULL) {
		ret = SS_ENOMEM;
		goto out;
	}
	PGresult *r = PQexec(conn, first != NULL ? "COPY updates (" ENTRY_COPY_COLUMNS ") "
	                     "FROM STDIN (FORMAT binary)" : STAGE_COPY);
	if (PQresultStatus(r) != PGRES_COPY_IN) {
		db_errcopy(PQresultErrorMessage(r), job->err, sizeof(job->err));
		PQclear(r);
		ret = SS_EDB;
		goto out;
	}
	PQclear(r);
	copy_bin_header(&s.cb);
	if (first != NULL)
		copy_bin_header(&first->meta_cb);
	catalog_stats_t stats = { 0 };
	char perr[256] = "";
	atomic_store(&job->phase, 1);
	/* Without a writer thread the rows are still written, on this one. */
	bool piped = handoff_start(&s.pipe, BATCHES, BATCH_BYTES, stage_put_batch, &s,
	                           &s.cur) == SS_EOK;
	if (job->wsus)
		ret = stage_wsus(&s, path, &stats);
	else if (remote_is_url(job->url) && job->import_id == NULL)
		ret = stage_stream(&s, path, &stats);
	else
		ret = catalog_parse_file_bounded(path, job->max_bytes, job->max_entry_bytes,
		                                  stage_entry_cb, &s, &stats, perr, sizeof(perr));
	job->primary_entries = stats.entries;
	/* Further sources ([source NAME]) follow the url's catalog in the stage:
	 * of an id two sources carry, the first staged wins. */
	for (size_t i = 0; ret == SS_EOK && i < job->n_sources; i++) {
		upstream_source_t *src = &job->sources[i];
		catalog_stats_t ss = { 0 };
		src->seq_lo = s.packaged;
		s.from_url = src->url;
		ret = catalog_parse_file_bounded(src->path, job->max_bytes, job->max_entry_bytes,
		                                 stage_entry_cb, &s, &ss, perr, sizeof(perr));
		src->seq_hi = s.packaged;
		src->entries = ss.entries;
		stats.entries += ss.entries;
		stats.bytes += ss.bytes;
		if (ret != SS_EOK && job->err[0] == '\0')
			snprintf(job->err, sizeof(job->err), "source %s: cannot parse the catalog, nothing "
			         "was changed: %s", src->name, perr[0] ? perr : ss_strerror(ret));
	}
	if (ret == SS_EOK && s.win != NULL)
		ret = window_drain(&s);
	if (piped) {
		int pr = stage_pipe_finish(&s, ret == SS_EOK);
		if (pr != SS_EOK)
			ret = pr;
	}
	/* The whole catalog is refused: say so, then where the parser stopped. */
	if (ret == SS_ETOOBIG && job->err[0] == '\0') {
		char shown[512];
		log_url_redact(job->url, shown, sizeof(shown));
		snprintf(job->err, sizeof(job->err), "refused the catalog from %s, nothing was "
		         "changed: %s", shown, perr);
	}
	if (ret != SS_EOK && job->err[0] == '\0')
		snprintf(job->err, sizeof(job->err), "cannot parse the catalog, nothing was changed: %s",
		         perr[0] ? perr : ss_strerror(ret));
	if (ret == SS_EOK)
		copy_bin_trailer(&s.cb);
	int fin = copy_finish(conn, &s.cb, ret == SS_EOK ? job->err : NULL,
	                      ret == SS_EOK ? sizeof(job->err) : 0);
	job->entries_seen = stats.entries;
	if (ret == SS_EOK && fin == SS_EOK && first != NULL) {
		copy_bin_trailer(&first->meta_cb);
		fin = first_sync_load_stage(first, conn, STAGE_COPY, job->err, sizeof(job->err));
	}
	if (ret == SS_EOK && fin == SS_EOK && job->import_id != NULL && s.staged == 0) {
		snprintf(job->err, sizeof(job->err), "update %s is not in the catalog (%" PRIu64
		         " packages read)", job->import_id, stats.entries);
		ret = SS_ENOENT;
		goto out;
	}
	if (ret == SS_EOK)
		ret = fin;
out:
	window_free(s.win);
	copy_clear(&s.cb);
	copy_clear(&s.fields);
	free(s.packed);
	return ret;
}

int upstream_stage(PGconn *conn, upstream_job_t *job, const char *path)
{
	return upstream_stage_catalog(conn, job, path, NULL);
}
