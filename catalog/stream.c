/* Producing pull streams from the database and reading stream files. */
#include "catalog/stream.h"
#include "catalog/feed.h"

#include <arpa/inet.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/entry.h"
#include "common/errcode.h"
#include "storage/db.h"

/* Count the bytes written since `before` against the spool disk budget
 * that every producer shares; the spool gives them back when it deletes
 * the file. */
static int produce_account(stream_produce_t *p, uint64_t before)
{
	if (p->disk_used == NULL)
		return SS_EOK;
	uint64_t n = p->bytes - before;
	uint64_t now = atomic_fetch_add(p->disk_used, n) + n;
	if (p->disk_limit > 0 && now > p->disk_limit) {
		snprintf(p->err, sizeof(p->err), "the pull streams spooled here would take %" PRIu64
		         " bytes, over the limit of %" PRIu64 " ([replication] spool_max_mb)",
		         now, p->disk_limit);
		return SS_ENOSPC;
	}
	return SS_EOK;
}

/* stream_write_frame() for a producer: counted against the disk budget. */
static int produce_write(stream_produce_t *p, FILE *out, const frame_t *f)
{
	uint64_t before = p->bytes;
	int ret = stream_write_frame(out, f, &p->bytes);
	int acc = produce_account(p, before);
	if (ret == SS_EOK && acc == SS_EOK && p->published) {
		/* Whole frames only, and only once they are in the file. */
		if (fflush(out) != 0)
			return SS_EIO;
		atomic_store(p->published, p->bytes);
	}
	return ret != SS_EOK ? ret : acc;
}

int stream_write_frame(FILE *out, const frame_t *f, uint64_t *bytes)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = frame_encode(f, &buf, &len);
	if (ret != SS_EOK)
		return ret;
	if (fwrite(buf, 1, len, out) != len)
		ret = SS_EIO;
	free(buf);
	if (ret == SS_EOK && bytes)
		*bytes += len;
	return ret;
}

/* One Batch under construction; rows point into the PGresults kept here. */
typedef struct {
	bool tamper;            /* forge the first entry, keep the digest consistent */
	bool tamper_set;        /* forge the first entry, fix up only the protocol-2 sum */
	digest_t *digest;       /* the digest PullDone will carry */
	int cap;
	int n_up;
	int n_del;
	size_t bytes;
	char (*ids)[37];
	char **id_ptrs;
	char **del_ptrs;
	Sitesync__Entry *entries;
	Sitesync__Entry **entry_ptrs;
	PGresult **rows;
	int n_rows;
} batch_t;

static int batch_init(batch_t *b, int cap)
{
	memset(b, 0, sizeof(*b));
	b->cap = cap;
	b->ids = calloc((size_t)cap, sizeof(*b->ids));
	b->id_ptrs = calloc((size_t)cap, sizeof(char *));
	b->del_ptrs = calloc((size_t)cap, sizeof(char *));
	b->entries = calloc((size_t)cap, sizeof(*b->entries));
	b->entry_ptrs = calloc((size_t)cap, sizeof(*b->entry_ptrs));
	b->rows = calloc((size_t)cap, sizeof(*b->rows));
	if (!b->ids || !b->id_ptrs || !b->del_ptrs || !b->entries || !b->entry_ptrs || !b->rows)
		return SS_ENOMEM;
	return SS_EOK;
}

static void batch_reset(batch_t *b)
{
	for (int i = 0; i < b->n_rows; i++)
		PQclear(b->rows[i]);
	b->n_rows = b->n_up = b->n_del = 0;
	b->bytes = 0;
}

static void batch_clear(batch_t *b)
{
	batch_reset(b);
	free(b->ids);
	free(b->id_ptrs);
	free(b->del_ptrs);
	free(b->entries);
	free(b->entry_ptrs);
	free(b->rows);
}

static int batch_flush(batch_t *b, FILE *out, stream_produce_t *p)
{
	if (b->n_up == 0 && b->n_del == 0)
		return SS_EOK;
	Sitesync__Batch msg = SITESYNC__BATCH__INIT;
	msg.n_ids = (size_t)b->n_up;
	msg.ids = b->id_ptrs;
	msg.n_entries = (size_t)b->n_up;
	msg.entries = b->entry_ptrs;
	msg.n_deletes = (size_t)b->n_del;
	msg.deletes = b->del_ptrs;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_BATCH;
	f.batch = &msg;
	int ret = produce_write(p, out, &f);
	batch_reset(b);
	return ret;
}

/* Add one row (update_id, revision, content) of a single-row-mode result. */
static void batch_add(batch_t *b, PGresult *row)
{
	int slot = b->n_up + b->n_del;
	entry_id_format((const uint8_t *)PQgetvalue(row, 0, 0), b->ids[slot]);
	b->rows[b->n_rows++] = row;
	if (PQgetisnull(row, 0, 1)) {
		b->del_ptrs[b->n_del++] = b->ids[slot];
		b->bytes += 40;
		return;
	}
	uint32_t rev_be;
	memcpy(&rev_be, PQgetvalue(row, 0, 1), 4);
	Sitesync__Entry *e = &b->entries[b->n_up];
	sitesync__entry__init(e);
	e->revision = ntohl(rev_be);
	e->content.data = (uint8_t *)PQgetvalue(row, 0, 2);
	e->content.len = (size_t)PQgetlength(row, 0, 2);
	if (b->tamper && e->content.len > 0) {
		/* What a compromised relay would do: change an entry and fix up the
		 * digest so that the digest check alone cannot notice. */
		uint8_t h[SS_DIGEST_LEN];
		digest_entry_hash(e->revision, e->content.data, e->content.len, h);
		digest_sub(b->digest, h);
		e->content.data[e->content.len - 1] ^= 0x02;
		digest_entry_hash(e->revision, e->content.data, e->content.len, h);
		digest_add(b->digest, h);
		b->tamper = false;
	} else if (b->tamper_set && e->content.len > 0) {
		/* What a relay that won the generalised birthday attack sends: other
		 * entries under the same protocol-2 sum and count. The sum is fixed
		 * up here (no real collision is computed); the set digest is left as
		 * the top made it, which a forger cannot match. */
		uint8_t h[SS_DIGEST_LEN];
		digest_entry_hash(e->revision, e->content.data, e->content.len, h);
		digest_sum_sub(b->digest->b, h);
		e->content.data[e->content.len - 1] ^= 0x02;
		digest_entry_hash(e->revision, e->content.data, e->content.len, h);
		digest_sum_add(b->digest->b, h);
		b->tamper_set = false;
	}
	b->entry_ptrs[b->n_up] = e;
	b->id_ptrs[b->n_up] = b->ids[slot];
	b->n_up++;
	b->bytes += 48 + e->content.len;
}

static int produce_rows(PGconn *conn, stream_produce_t *p, const char *sql,
                        int nparams, const char *const *params, FILE *out)
{
	batch_t b;
	int ret = batch_init(&b, p->batch_entries);
	if (ret != SS_EOK)
		goto out;
	b.tamper = p->tamper == STREAM_TAMPER_BATCH;
	b.tamper_set = p->tamper == STREAM_TAMPER_SET;
	b.digest = &p->digest;
	if (!PQsendQueryParams(conn, sql, nparams, NULL, params, NULL, NULL, 1) ||
	    !PQsetSingleRowMode(conn)) {
		db_errcopy(PQerrorMessage(conn), p->err, sizeof(p->err));
		ret = SS_EDB;
		goto out;
	}
	PGresult *r;
	while ((r = PQgetResult(conn)) != NULL) {
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_SINGLE_TUPLE) {
			if (ret == SS_EOK) {
				/* A large entry goes alone in its Batch, so a frame is
				 * never more than one entry over batch_bytes: readers
				 * admit one entry of [upstream] max_entry_bytes. */
				size_t add = PQgetisnull(r, 0, 1) ? 40 : 48 + (size_t)PQgetlength(r, 0, 2);
				if (b.n_up + b.n_del > 0 && b.bytes + add > p->batch_bytes)
					ret = batch_flush(&b, out, p);
			}
			if (ret == SS_EOK) {
				batch_add(&b, r);
				if (b.n_up + b.n_del >= b.cap || b.bytes >= p->batch_bytes)
					ret = batch_flush(&b, out, p);
			} else {
				PQclear(r);
			}
			continue;
		}
		if (st != PGRES_TUPLES_OK && ret == SS_EOK) {
			db_errcopy(PQresultErrorMessage(r), p->err, sizeof(p->err));
			ret = SS_EDB;
		}
		PQclear(r);
	}
	if (ret == SS_EOK)
		ret = batch_flush(&b, out, p);
	else if (p->err[0] == '\0')
		snprintf(p->err, sizeof(p->err), "writing the stream: %s", ss_strerror(ret));
out:
	batch_clear(&b);
	return ret;
}

/* In the table's stored order: a sequential read. In id order it is a
 * random read of the heap wherever rows were not written in id order (a
 * first upstream sync writes them in catalog order), and no reader needs
 * the order: a snapshot is applied as a set and its digest is a sum. */
static const char *const SQL_FULL =
	"SELECT update_id, revision, content FROM updates";
static const char *const SQL_DELTA_SIZE =
	"SELECT count(DISTINCT update_id) FROM changes WHERE version > $1::bigint";
/* The planner cannot tell how few ids the change log yields and tends to
 * hash-join them against a scan of the whole catalog; up to this many, the
 * *_PROBE forms look each id up by key instead (OFFSET 0 keeps the lateral
 * lookup from being flattened back into a join). */
#define DELTA_PROBE_MAX 10000
static const char *const SQL_DELTA =
	"SELECT c.update_id, u.revision, u.content "
	"FROM (SELECT DISTINCT update_id FROM changes WHERE version > $1::bigint) c "
	"LEFT JOIN updates u USING (update_id) ORDER BY c.update_id";
static const char *const SQL_DELTA_COUNT =
	"SELECT count(u.update_id), count(*) - count(u.update_id) "
	"FROM (SELECT DISTINCT update_id FROM changes WHERE version > $1::bigint) c "
	"LEFT JOIN updates u USING (update_id)";
static const char *const SQL_DELTA_PROBE =
	"SELECT c.update_id, u.revision, u.content "
	"FROM (SELECT DISTINCT update_id FROM changes WHERE version > $1::bigint) c "
	"LEFT JOIN LATERAL (SELECT revision, content FROM updates u "
	"WHERE u.update_id = c.update_id OFFSET 0) u ON true ORDER BY c.update_id";
static const char *const SQL_DELTA_COUNT_PROBE =
	"SELECT count(u.one), count(*) - count(u.one) "
	"FROM (SELECT DISTINCT update_id FROM changes WHERE version > $1::bigint) c "
	"LEFT JOIN LATERAL (SELECT 1 AS one FROM updates u "
	"WHERE u.update_id = c.update_id OFFSET 0) u ON true";

/* The manifest of version `to`: as stored (relayed from the top), or
 * signed now when this is the top site and holds the signing key. */
static int stream_manifest(PGconn *conn, stream_produce_t *p, uint8_t **m, size_t *mlen,
                           uint8_t **sig, size_t *slen)
{
	char to[24];
	snprintf(to, sizeof(to), "%" PRIu64, p->to);
	const char *params[] = { to };
	PGresult *r = NULL;
	*m = *sig = NULL;
	*mlen = *slen = 0;
	int ret = db_query(conn, "SELECT manifest, signature, extract(epoch FROM created_at)::bigint, "
	                   "(SELECT max(version) FROM catalog_versions WHERE version < $1::bigint) "
	                   "FROM catalog_versions WHERE version = $1::bigint", 1, params, &r,
	                   p->err, sizeof(p->err));
	if (ret != SS_EOK)
		return ret;
	if (PQntuples(r) == 1 && !PQgetisnull(r, 0, 0) && !PQgetisnull(r, 0, 1)) {
		size_t n1 = 0, n2 = 0;
		unsigned char *a = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 0), &n1);
		unsigned char *b = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &n2);
		if (a && b) {
			*m = malloc(n1 ? n1 : 1);
			*sig = malloc(n2 ? n2 : 1);
			if (*m && *sig) {
				memcpy(*m, a, n1);
				memcpy(*sig, b, n2);
				*mlen = n1;
				*slen = n2;
			}
		}
		PQfreemem(a);
		PQfreemem(b);
	} else if (PQntuples(r) == 1 && p->keys && p->keys->sign_key && p->to > 0) {
		Sitesync__Manifest mf = SITESYNC__MANIFEST__INIT;
		mf.site = (char *)(p->site ? p->site : "");
		mf.version = p->to;
		mf.digest.data = p->digest.b;
		mf.digest.len = SS_DIGEST_LEN;
		mf.set_digest.data = p->set_digest;
		mf.set_digest.len = SS_DIGEST_LEN;
		mf.entries = p->entries;
		mf.previous_version = PQgetisnull(r, 0, 3) ? 0 : strtoull(PQgetvalue(r, 0, 3), NULL, 10);
		mf.created_at = strtoll(PQgetvalue(r, 0, 2), NULL, 10);
		if (p->keys->have_next_key) {
			mf.next_public_key.data = (uint8_t *)p->keys->next_key;
			mf.next_public_key.len = sizeof(p->keys->next_key);
		}
		ret = manifest_sign(p->keys, &mf, m, mlen, sig, slen);
		if (ret != SS_EOK)
			snprintf(p->err, sizeof(p->err), "cannot sign the manifest of version %" PRIu64, p->to);
	}
	PQclear(r);
	return ret;
}

int stream_produce(PGconn *conn, stream_produce_t *p, FILE *out)
{
	uint8_t *man = NULL, *sig = NULL;
	size_t man_len = 0, sig_len = 0;
	PGresult *r = NULL;
	char have[24];
	snprintf(have, sizeof(have), "%" PRIu64, p->have);
	const char *params[] = { have };
	p->bytes = 0;
	p->err[0] = '\0';

	int ret = db_exec(conn, "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
	                  p->err, sizeof(p->err));
	if (ret != SS_EOK)
		return ret;
	ret = db_query(conn, "SELECT s.version, s.digest, s.entries, s.change_floor, "
	               "EXISTS (SELECT 1 FROM catalog_versions v WHERE v.version = $1::bigint), s.lthash "
	               "FROM catalog_state s", 1, params, &r, p->err, sizeof(p->err));
	if (ret != SS_EOK)
		goto fail;
	p->to = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
	size_t dlen = 0;
	unsigned char *d = PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 1), &dlen);
	if (d == NULL || dlen != SS_DIGEST_LEN) {
		PQfreemem(d);
		snprintf(p->err, sizeof(p->err), "catalog_state digest is not %d bytes", SS_DIGEST_LEN);
		ret = SS_EDB;
		goto fail;
	}
	memcpy(p->digest.b, d, SS_DIGEST_LEN);
	PQfreemem(d);
	d = PQgetisnull(r, 0, 5) ? NULL : PQunescapeBytea((const unsigned char *)PQgetvalue(r, 0, 5), &dlen);
	if (d == NULL || dlen != SS_LTHASH_BYTES) {
		PQfreemem(d);
		snprintf(p->err, sizeof(p->err), "catalog_state has no set hash");
		ret = SS_EDB;
		goto fail;
	}
	digest_state_load(&p->digest, d);
	PQfreemem(d);
	digest_set_hash(&p->digest, p->set_digest);
	p->entries = strtoull(PQgetvalue(r, 0, 2), NULL, 10);
	uint64_t floor = strtoull(PQgetvalue(r, 0, 3), NULL, 10);
	bool known = PQgetvalue(r, 0, 4)[0] == 't';
	bool probe = false;
	PQclear(r);
	r = NULL;

	/* A delta needs a version we know and a change log that reaches it. */
	p->full = p->want_full || p->have == 0 || p->have < floor ||
	          p->have > p->to || !known;
	p->from = p->full ? 0 : p->have;

	if (p->full) {
		p->upserts = p->entries;
		p->deletes = 0;
	} else {
		ret = db_query(conn, SQL_DELTA_SIZE, 1, params, &r, p->err, sizeof(p->err));
		if (ret != SS_EOK)
			goto fail;
		probe = strtoull(PQgetvalue(r, 0, 0), NULL, 10) <= DELTA_PROBE_MAX;
		PQclear(r);
		r = NULL;
		ret = db_query(conn, probe ? SQL_DELTA_COUNT_PROBE : SQL_DELTA_COUNT, 1, params, &r,
		               p->err, sizeof(p->err));
		if (ret != SS_EOK)
			goto fail;
		p->upserts = strtoull(PQgetvalue(r, 0, 0), NULL, 10);
		p->deletes = strtoull(PQgetvalue(r, 0, 1), NULL, 10);
		PQclear(r);
		r = NULL;
	}

	Sitesync__PullStart ps = SITESYNC__PULL_START__INIT;
	ps.from_version = p->from;
	ps.to_version = p->to;
	ps.full = p->full;
	ps.upserts = p->upserts;
	ps.deletes = p->deletes;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PULL_START;
	f.pull_start = &ps;
	if ((ret = produce_write(p, out, &f)) != SS_EOK)
		goto fail;

	/* Before any row: what the top vouches for must not see the test forgery. */
	if ((ret = stream_manifest(conn, p, &man, &man_len, &sig, &sig_len)) != SS_EOK)
		goto fail;
	if (p->full)
		ret = produce_rows(conn, p, SQL_FULL, 0, NULL, out);
	else if (p->have < p->to)
		ret = produce_rows(conn, p, probe ? SQL_DELTA_PROBE : SQL_DELTA, 1, params, out);
	if (ret != SS_EOK)
		goto fail;

	Sitesync__PullDone pd = SITESYNC__PULL_DONE__INIT;
	pd.version = p->to;
	pd.digest.data = p->digest.b;
	pd.digest.len = SS_DIGEST_LEN;
	/* From the digest as the rows left it: the test forgeries change it
	 * (STREAM_TAMPER_SET only its sum, which leaves the set digest as is). */
	digest_set_hash(&p->digest, p->set_digest);
	pd.set_digest.data = p->set_digest;
	pd.set_digest.len = SS_DIGEST_LEN;
	pd.entries = p->entries;
	pd.manifest.data = man;
	pd.manifest.len = man_len;
	pd.signature.data = sig;
	pd.signature.len = sig_len;
	f.msg_case = SITESYNC__FRAME__MSG_PULL_DONE;
	f.pull_done = &pd;
	if ((ret = produce_write(p, out, &f)) != SS_EOK)
		goto fail;
	if (fflush(out) != 0) {
		ret = SS_EIO;
		goto fail;
	}
	free(man);
	free(sig);
	return db_exec(conn, "COMMIT", p->err, sizeof(p->err));
fail:
	free(man);
	free(sig);
	if (p->err[0] == '\0')
		snprintf(p->err, sizeof(p->err), "%s", ss_strerror(ret));
	PQclear(r);
	db_exec(conn, "ROLLBACK", NULL, 0);
	return ret;
}

int stream_reader_open(stream_reader_t *r, const char *path, size_t limit)
{
	memset(r, 0, sizeof(*r));
	r->f = fopen(path, "rb");
	if (r->f == NULL)
		return -errno;
	r->limit = limit;
	return SS_EOK;
}

int stream_read_raw(FILE *f, size_t limit, uint8_t **buf, size_t *cap, size_t *len)
{
	uint8_t hdr[SS_FRAME_HDR];
	size_t n = fread(hdr, 1, sizeof(hdr), f);
	if (n == 0 && feof(f))
		return 1;
	if (n < sizeof(hdr))
		return ferror(f) ? SS_EIO : SS_ETRUNC;
	uint32_t body = 0;
	int ret = frame_header_parse(hdr, sizeof(hdr), limit, &body);
	if (ret != SS_EOK)
		return ret;
	size_t need = SS_FRAME_HDR + (size_t)body;
	if (need > *cap) {
		uint8_t *nb = realloc(*buf, need);
		if (nb == NULL)
			return SS_ENOMEM;
		*buf = nb;
		*cap = need;
	}
	memcpy(*buf, hdr, sizeof(hdr));
	if (fread(*buf + SS_FRAME_HDR, 1, body, f) != body)
		return ferror(f) ? SS_EIO : SS_ETRUNC;
	*len = need;
	return SS_EOK;
}

int stream_reader_next(stream_reader_t *r, frame_t **out)
{
	/* Behind a writer: read only whole frames it has published. */
	if (r->feed) {
		int w = stream_feed_wait(r->feed, r->offset, r->feed_wait);
		if (w != 0)
			return w;
	}
	int ret = stream_read_raw(r->f, r->limit, &r->buf, &r->cap, &r->len);
	if (ret != SS_EOK)
		return ret;
	r->offset += r->len;
	return frame_decode(r->buf + SS_FRAME_HDR, r->len - SS_FRAME_HDR, out);
}

int stream_seek_frame(FILE *f, uint64_t offset, size_t limit)
{
	uint64_t pos = 0;
	while (pos < offset) {
		uint8_t hdr[SS_FRAME_HDR];
		uint32_t body = 0;
		if (fseeko(f, (off_t)pos, SEEK_SET) != 0 || fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr) ||
		    frame_header_parse(hdr, sizeof(hdr), limit, &body) != SS_EOK)
			return SS_EMALF;
		pos += SS_FRAME_HDR + (uint64_t)body;
	}
	if (pos != offset || fseeko(f, (off_t)offset, SEEK_SET) != 0)
		return SS_EMALF;
	return SS_EOK;
}

const uint8_t *stream_reader_raw(const stream_reader_t *r, size_t *len)
{
	*len = r->len;
	return r->buf;
}

void stream_reader_close(stream_reader_t *r)
{
	if (r->f)
		fclose(r->f);
	free(r->buf);
	memset(r, 0, sizeof(*r));
}
