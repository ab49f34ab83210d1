/* Staging a catalog: a parser thread and a writer thread. */
#include "upstream/stage.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "proto/sitesync.pb-c.h"
#include "replication/digest.h"
#include "replication/entry.h"
#include "replication/stream.h"
#include "server/errcode.h"
#include "storage/copy.h"
#include "storage/db.h"
#include "upstream/catalog.h"
#include "upstream/expire.h"
#include "upstream/remote.h"

/* Below the socket buffer, so PostgreSQL reads while the next rows are built. */
#define COPY_FLUSH_BYTES (64u << 10)
#define META_FLUSH_BYTES (1u << 20)
#define BATCH_BYTES (1u << 20)
#define BATCHES 4

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
/* ENTRY_COPY_COLUMNS */
#define ENTRY_FIELDS 15

/* One package as the parser hands it to the writer; content and the
 * encoded column fields (entry_copy_fields) follow it in the batch. */
typedef struct {
	uint8_t uuid[16];
	uint32_t split[3];
	uint32_t content_len;
	uint32_t fields_len;
	bool selected;
} stage_rec_t;

typedef struct {
	uint8_t *buf;
	size_t len, cap;
} stage_batch_t;

/* Filled batches go to the writer in order; it hands them back empty. */
typedef struct {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	stage_batch_t batches[BATCHES];
	stage_batch_t *full[BATCHES];
	size_t head, nfull;
	stage_batch_t *spare[BATCHES];
	size_t nspare;
	bool eof, abort;
	int err;                   /* the writer's first error, sticky */
	char errmsg[256];
	pthread_t thread;
} stage_pipe_t;

typedef struct {
	PGconn *conn;
	upstream_job_t *job;
	first_sync_t *first;      /* set: selected rows go to updates, the stage gets no content */
	/* writer side */
	copybuf_t cb;
	uint64_t staged;
	/* parser side */
	copybuf_t fields;
	uint8_t *packed;
	size_t packed_cap;
	stage_batch_t *cur;
	stage_pipe_t *pipe;
} stage_ctx_t;

/* Writer: one package's rows (stage, and updates on a first sync). */
static int stage_put(stage_ctx_t *s, const stage_rec_t *r, const uint8_t *content,
                     const uint8_t *fields, char *err, size_t errlen)
{
	first_sync_t *f = s->first;
	uint8_t h1[SS_DIGEST_LEN];
	if (f == NULL || r->selected)
		digest_entry_hash(1, content, r->content_len, h1);
	else
		memset(h1, 0, sizeof(h1));   /* never written to updates */
	copybuf_t *cb = &s->cb;
	if (f != NULL && r->selected) {
		int added = idset_add(&f->ids, r->uuid);
		if (added < 0)
			return added;
		if (added) {
			copy_bin_row(cb, ENTRY_FIELDS);
			copy_bin_uuid(cb, r->uuid);
			copy_bin_int4(cb, 1);
			copy_bin_raw(cb, fields, r->fields_len);
			copy_bin_bytes(cb, h1, sizeof(h1));
			copy_bin_bytes(cb, content, r->content_len);
			f->written++;
		}
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
		ret = copy_flush(s->conn, cb, COPY_FLUSH_BYTES, err, errlen);
	return ret;
}

static int stage_put_batch(stage_ctx_t *s, const stage_batch_t *b, char *err, size_t errlen)
{
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

static void *stage_writer_main(void *arg)
{
	stage_ctx_t *s = arg;
	stage_pipe_t *p = s->pipe;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		while (p->nfull == 0 && !p->eof)
			pthread_cond_wait(&p->cv, &p->mu);
		if (p->nfull == 0)
			break;
		stage_batch_t *b = p->full[p->head];
		p->head = (p->head + 1) % BATCHES;
		p->nfull--;
		bool skip = p->err != SS_EOK || p->abort;
		pthread_mutex_unlock(&p->mu);
		int ret = skip ? SS_EOK : stage_put_batch(s, b, p->errmsg, sizeof(p->errmsg));
		pthread_mutex_lock(&p->mu);
		if (ret != SS_EOK && p->err == SS_EOK)
			p->err = ret;
		b->len = 0;
		p->spare[p->nspare++] = b;
		pthread_cond_broadcast(&p->cv);
	}
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

static int stage_pipe_start(stage_ctx_t *s, stage_pipe_t *p)
{
	memset(p, 0, sizeof(*p));
	for (int i = 0; i < BATCHES; i++) {
		p->batches[i].buf = malloc(BATCH_BYTES);
		if (p->batches[i].buf == NULL)
			goto fail;
		p->batches[i].cap = BATCH_BYTES;
		p->spare[p->nspare++] = &p->batches[i];
	}
	if (pthread_mutex_init(&p->mu, NULL) != 0)
		goto fail;
	if (pthread_cond_init(&p->cv, NULL) != 0) {
		pthread_mutex_destroy(&p->mu);
		goto fail;
	}
	s->pipe = p;
	s->cur = p->spare[--p->nspare];
	if (pthread_create(&p->thread, NULL, stage_writer_main, s) != 0) {
		pthread_cond_destroy(&p->cv);
		pthread_mutex_destroy(&p->mu);
		s->pipe = NULL;
		s->cur = NULL;
		goto fail;
	}
	return SS_EOK;
fail:
	for (int i = 0; i < BATCHES; i++)
		free(p->batches[i].buf);
	return SS_ENOMEM;
}

/* Hand the parser's batch over and take a spare one (waiting for it). */
static int stage_pipe_push(stage_ctx_t *s)
{
	stage_pipe_t *p = s->pipe;
	pthread_mutex_lock(&p->mu);
	p->full[(p->head + p->nfull) % BATCHES] = s->cur;
	p->nfull++;
	pthread_cond_broadcast(&p->cv);
	while (p->nspare == 0)
		pthread_cond_wait(&p->cv, &p->mu);
	s->cur = p->spare[--p->nspare];
	int err = p->err;
	pthread_mutex_unlock(&p->mu);
	return err;
}

/* Send what is left (unless \a ok is false), stop the writer, free all. */
static int stage_pipe_finish(stage_ctx_t *s, bool ok)
{
	stage_pipe_t *p = s->pipe;
	int ret = SS_EOK;
	if (ok && s->cur->len > 0)
		ret = stage_pipe_push(s);
	pthread_mutex_lock(&p->mu);
	p->eof = true;
	p->abort = !ok || ret != SS_EOK;
	pthread_cond_broadcast(&p->cv);
	pthread_mutex_unlock(&p->mu);
	pthread_join(p->thread, NULL);
	if (ret == SS_EOK)
		ret = p->err;
	if (p->err != SS_EOK && s->job->err[0] == '\0')
		snprintf(s->job->err, sizeof(s->job->err), "%s", p->errmsg);
	pthread_cond_destroy(&p->cv);
	pthread_mutex_destroy(&p->mu);
	for (int i = 0; i < BATCHES; i++)
		free(p->batches[i].buf);
	s->pipe = NULL;
	s->cur = NULL;
	return ret;
}

static int stage_pack(stage_ctx_t *s, const Sitesync__UpdateContent *u, size_t *len)
{
	size_t n = sitesync__update_content__get_packed_size(u);
	if (n > s->packed_cap) {
		uint8_t *nb = realloc(s->packed, n ? n : 1);
		if (nb == NULL)
			return SS_ENOMEM;
		s->packed = nb;
		s->packed_cap = n;
	}
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
	entry_id_bytes(u->update_id, r.uuid);
	r.selected = s->first == NULL || first_sync_selected(s->first, u);
	s->fields.len = 0;
	entry_copy_fields(&s->fields, u);
	r.content_len = (uint32_t)len;
	r.fields_len = (uint32_t)s->fields.len;
	if (s->pipe == NULL)
		return stage_put(s, &r, content, (const uint8_t *)s->fields.buf, s->job->err,
		                 sizeof(s->job->err));
	stage_batch_t *b = s->cur;
	size_t need = sizeof(r) + len + s->fields.len;
	if (b->len > 0 && b->len + need > b->cap) {
		int ret = stage_pipe_push(s);
		if (ret != SS_EOK)
			return ret;
		b = s->cur;
	}
	if (need > b->cap) {
		/* One package larger than a batch: this batch grows for it. */
		uint8_t *nb = realloc(b->buf, need);
		if (nb == NULL)
			return SS_ENOMEM;
		b->buf = nb;
		b->cap = need;
	}
	memcpy(b->buf + b->len, &r, sizeof(r));
	memcpy(b->buf + b->len + sizeof(r), content, len);
	memcpy(b->buf + b->len + sizeof(r) + len, s->fields.buf, s->fields.len);
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

int upstream_stage_catalog(PGconn *conn, upstream_job_t *job, const char *path,
                           first_sync_t *first)
{
	stage_ctx_t s = { .conn = conn, .job = job, .first = first };
	stage_pipe_t pipe;
	copy_init(&s.cb);
	copy_init(&s.fields);
	int ret = db_exec(conn, SQL_STAGE_TABLE, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		goto out;
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
	bool piped = stage_pipe_start(&s, &pipe) == SS_EOK;
	if (remote_is_url(job->url) && job->import_id == NULL)
		ret = stage_stream(&s, path, &stats);
	else
		ret = catalog_parse_file(path, stage_entry_cb, &s, &stats, perr, sizeof(perr));
	if (piped) {
		int pr = stage_pipe_finish(&s, ret == SS_EOK);
		if (ret == SS_EOK || pr != SS_EOK)
			ret = pr != SS_EOK ? pr : ret;
	}
	/* The whole catalog is refused: say so, then where the parser stopped. */
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
	copy_clear(&s.cb);
	copy_clear(&s.fields);
	free(s.packed);
	return ret;
}

int upstream_stage(PGconn *conn, upstream_job_t *job, const char *path)
{
	return upstream_stage_catalog(conn, job, path, NULL);
}
