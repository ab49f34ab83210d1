/* WSUS upstream sync: selection and held revisions in, categories and anchors out. */
#include "upstream/wsus_sync.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog/entry.h"
#include "common/errcode.h"
#include "storage/db.h"
#include "upstream/wsus.h"

typedef struct {
	char **v;
	size_t n;
} strv_t;

static void strv_free(strv_t *s)
{
	for (size_t i = 0; i < s->n; i++)
		free(s->v[i]);
	free(s->v);
	memset(s, 0, sizeof(*s));
}

static int strv_add(strv_t *s, const char *x)
{
	char **nb = realloc(s->v, (s->n + 1) * sizeof(char *));
	if (nb == NULL)
		return SS_ENOMEM;
	s->v = nb;
	if ((s->v[s->n] = strdup(x)) == NULL)
		return SS_ENOMEM;
	s->n++;
	return SS_EOK;
}

static int get_text(PGconn *conn, const char *key, char **out, char *err, size_t errlen)
{
	PGresult *r = NULL;
	const char *p[] = { key };
	*out = NULL;
	int ret = db_query(conn, "SELECT value FROM settings WHERE key = $1", 1, p, &r, err, errlen);
	if (ret == SS_EOK && PQntuples(r) == 1 && (*out = strdup(PQgetvalue(r, 0, 0))) == NULL)
		ret = SS_ENOMEM;
	PQclear(r);
	return ret;
}

static int set_text(PGconn *conn, const char *key, const char *value, char *err, size_t errlen)
{
	const char *p[] = { key, value ? value : "" };
	return db_execp(conn, "INSERT INTO settings (key, value) VALUES ($1, $2) "
	                "ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value", 2, p, err, errlen);
}

static int cmp_catrec(const void *a, const void *b)
{
	return strcmp(((const wsus_catrec_t *)a)->id, ((const wsus_catrec_t *)b)->id);
}

/* The category documents held, sorted by id for wsus.c. */
static int load_cats(PGconn *conn, upstream_job_t *job, wsus_catrec_t **out, size_t *n)
{
	PGresult *r = NULL;
	*out = NULL;
	*n = 0;
	int ret = db_query(conn, "SELECT id::text, revision, type, title, parent FROM wsus_categories",
	                   0, NULL, &r, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		return ret;
	size_t rows = (size_t)PQntuples(r);
	wsus_catrec_t *v = calloc(rows + 1, sizeof(*v));
	if (v == NULL) {
		PQclear(r);
		return SS_ENOMEM;
	}
	for (size_t i = 0; i < rows; i++) {
		snprintf(v[i].id, sizeof(v[i].id), "%s", PQgetvalue(r, (int)i, 0));
		v[i].revision = (uint32_t)strtoul(PQgetvalue(r, (int)i, 1), NULL, 10);
		snprintf(v[i].type, sizeof(v[i].type), "%s", PQgetvalue(r, (int)i, 2));
		snprintf(v[i].parent, sizeof(v[i].parent), "%s", PQgetvalue(r, (int)i, 4));
		if ((v[i].title = strdup(PQgetvalue(r, (int)i, 3))) == NULL) {
			ret = SS_ENOMEM;
			rows = i;
			break;
		}
	}
	PQclear(r);
	qsort(v, rows, sizeof(*v), cmp_catrec);
	*out = v;
	*n = rows;
	return ret;
}

static int cmp_held(const void *a, const void *b)
{
	return memcmp(((const wsus_held_t *)a)->id, ((const wsus_held_t *)b)->id, 16);
}

/* "{id,id,...}" for a uuid[] parameter. */
static char *id_array(uint8_t (*ids)[16], size_t n)
{
	char *s = malloc(2 + n * 37 + 1);
	if (s == NULL)
		return NULL;
	size_t k = 0;
	s[k++] = '{';
	static const char hex[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		if (i)
			s[k++] = ',';
		for (int j = 0; j < 16; j++) {
			if (j == 4 || j == 6 || j == 8 || j == 10)
				s[k++] = '-';
			s[k++] = hex[ids[i][j] >> 4];
			s[k++] = hex[ids[i][j] & 15];
		}
	}
	s[k++] = '}';
	s[k] = '\0';
	return s;
}

/* Held entries the upstream still lists: their stored content, appended. */
static int append_kept(PGconn *conn, upstream_job_t *job, const char *dest)
{
	wsus_result_t *r = &job->wsus_res;
	if (r->n_keep == 0)
		return SS_EOK;
	char *arr = id_array(r->keep, r->n_keep);
	if (arr == NULL)
		return SS_ENOMEM;
	const char *p[] = { arr };
	PGresult *res = PQexecParams(conn, "SELECT content FROM updates WHERE source = 'upstream' "
	                             "AND update_id = ANY($1::uuid[])", 1, NULL, p, NULL, NULL, 1);
	free(arr);
	int ret = SS_EOK;
	if (PQresultStatus(res) != PGRES_TUPLES_OK) {
		db_errcopy(PQresultErrorMessage(res), job->err, sizeof(job->err));
		PQclear(res);
		return SS_EDB;
	}
	FILE *f = fopen(dest, "ab");
	if (f == NULL) {
		snprintf(job->err, sizeof(job->err), "cannot append to %s: %s", dest, strerror(errno));
		ret = SS_EIO;
		goto out;
	}
	for (int i = 0; i < PQntuples(res); i++) {
		size_t n = (size_t)PQgetlength(res, i, 0);
		uint8_t hdr[4] = { (uint8_t)(n >> 24), (uint8_t)(n >> 16), (uint8_t)(n >> 8), (uint8_t)n };
		if (fwrite(hdr, 1, 4, f) != 4 || fwrite(PQgetvalue(res, i, 0), 1, n, f) != n) {
			ret = SS_EIO;
			break;
		}
	}
	if (fclose(f) != 0 && ret == SS_EOK)
		ret = SS_EIO;
	if (ret == SS_EIO)
		snprintf(job->err, sizeof(job->err), "cannot append to %s", dest);
out:
	PQclear(res);
	return ret;
}

int wsus_sync_fetch(PGconn *conn, upstream_job_t *job, const char *selection, const char *dest)
{
	strv_t sel[3] = { { 0 } };
	static const char *const kinds[3] = { "product", "classification", "language" };
	char *anchor = NULL, *anchor_for = NULL, *want_for = NULL;
	wsus_held_t *held = NULL;
	size_t n_held = 0;
	wsus_catrec_t *cats = NULL;
	size_t n_cats = 0;
	PGresult *r = NULL;
	int ret = db_query(conn, "SELECT kind, id FROM categories WHERE selected AND kind IN "
	                   "('product', 'classification', 'language') ORDER BY kind, id", 0, NULL,
	                   &r, job->err, sizeof(job->err));
	if (ret != SS_EOK)
		goto out;
	for (int i = 0; ret == SS_EOK && i < PQntuples(r); i++)
		for (int k = 0; k < 3; k++)
			if (strcmp(PQgetvalue(r, i, 0), kinds[k]) == 0)
				ret = strv_add(&sel[k], PQgetvalue(r, i, 1));
	PQclear(r);
	r = NULL;
	if (ret != SS_EOK)
		goto out;
	/* The anchor answers for the filter it was made with: a changed
	 * selection (or URL) starts from a full list. */
	if (asprintf(&want_for, "%s %s", job->url, selection) < 0) {
		want_for = NULL;
		ret = SS_ENOMEM;
		goto out;
	}
	if ((ret = get_text(conn, "wsus_anchor", &anchor, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = get_text(conn, "wsus_anchor_filter", &anchor_for, job->err, sizeof(job->err))) != SS_EOK)
		goto out;
	bool delta = !job->full && anchor && anchor[0] && anchor_for && strcmp(anchor_for, want_for) == 0;
	if (!job->full) {
		ret = db_query(conn, "SELECT w.update_id::text, w.revision, w.bundled FROM wsus_revisions w "
		               "JOIN updates u USING (update_id) WHERE u.source = 'upstream'",
		               0, NULL, &r, job->err, sizeof(job->err));
		if (ret != SS_EOK)
			goto out;
		n_held = (size_t)PQntuples(r);
		held = calloc(n_held + 1, sizeof(*held));
		if (held == NULL) {
			ret = SS_ENOMEM;
			goto out;
		}
		for (size_t i = 0; i < n_held; i++) {
			entry_id_bytes(PQgetvalue(r, (int)i, 0), held[i].id);
			held[i].revision = (uint32_t)strtoul(PQgetvalue(r, (int)i, 1), NULL, 10);
			const char *b = PQgetvalue(r, (int)i, 2);
			size_t nb = b[0] ? (strlen(b) + 1) / 37 : 0;
			if (nb == 0)
				continue;
			held[i].members = malloc(nb * 16);
			if (held[i].members == NULL) {
				ret = SS_ENOMEM;
				goto out;
			}
			for (size_t k = 0; k < nb; k++) {
				char id[37];
				memcpy(id, b + 37 * k, 36);
				id[36] = '\0';
				if (!entry_id_valid(id))
					break;
				entry_id_bytes(id, held[i].members[held[i].n_members++]);
			}
		}
		qsort(held, n_held, sizeof(*held), cmp_held);
		PQclear(r);
		r = NULL;
	}
	if (!job->full && (ret = load_cats(conn, job, &cats, &n_cats)) != SS_EOK)
		goto out;
	wsus_opts_t o = {
		.url = job->url, .ca_file = job->ca_file, .proxy = job->proxy,
		.connect_timeout = job->connect_timeout, .timeout = job->timeout,
		.state_dir = job->state_dir,
		.products = sel[0].v, .n_products = sel[0].n,
		.classifications = sel[1].v, .n_classifications = sel[1].n,
		.languages = sel[2].v, .n_languages = sel[2].n,
		.anchor = delta ? anchor : NULL, .held = held, .n_held = n_held,
		.cats_held = cats, .n_cats_held = n_cats,
		.max_document = job->max_document, .retries = 3, .backoff_ms = 1000,
	};
	atomic_store(&job->phase, 0);
	wsus_result_clear(&job->wsus_res);
	ret = wsus_fetch(&o, dest, &job->wsus_res, job->err, sizeof(job->err));
	job->fetched_bytes = job->wsus_res.bytes;
	if (ret == SS_EOK)
		ret = append_kept(conn, job, dest);
out:
	PQclear(r);
	for (int k = 0; k < 3; k++)
		strv_free(&sel[k]);
	free(anchor);
	free(anchor_for);
	free(want_for);
	for (size_t i = 0; held != NULL && i < n_held; i++)
		free(held[i].members);
	free(held);
	for (size_t i = 0; i < n_cats; i++)
		free(cats[i].title);
	free(cats);
	return ret;
}

int wsus_sync_categories(PGconn *conn, upstream_job_t *job)
{
	const wsus_result_t *r = &job->wsus_res;
	int ret = SS_EOK;
	for (size_t i = 0; ret == SS_EOK && i < r->n_cats; i++) {
		const wsus_category_t *c = &r->cats[i];
		const char *p[] = { c->kind, c->id, c->title, c->parent };
		ret = db_execp(conn, "INSERT INTO categories (kind, id, title, parent_id) "
		               "VALUES ($1, $2, $3, $4) ON CONFLICT (kind, id) DO UPDATE "
		               "SET title = EXCLUDED.title, parent_id = EXCLUDED.parent_id",
		               4, p, job->err, sizeof(job->err));
	}
	if (ret == SS_EOK)
		ret = db_exec(conn, "DELETE FROM wsus_categories", job->err, sizeof(job->err));
	for (size_t i = 0; ret == SS_EOK && i < r->n_catrecs; i++) {
		const wsus_catrec_t *c = &r->catrecs[i];
		char rev[16];
		snprintf(rev, sizeof(rev), "%u", c->revision);
		const char *p[] = { c->id, rev, c->type, c->title, c->parent };
		ret = db_execp(conn, "INSERT INTO wsus_categories (id, revision, type, title, parent) "
		               "VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING",
		               5, p, job->err, sizeof(job->err));
	}
	return ret;
}

/* A text[] literal of \a n strings (ids, numbers, comma lists: nothing to quote but the list). */
static char *text_array(size_t n, const char *(*get)(const wsus_result_t *, size_t, char *),
                        const wsus_result_t *r)
{
	size_t cap = 16, len = 0;
	char *s = malloc(cap);
	if (s == NULL)
		return NULL;
	s[len++] = '{';
	for (size_t i = 0; i < n; i++) {
		char tmp[16];
		const char *v = get(r, i, tmp);
		size_t need = len + strlen(v) + 4;
		if (need > cap) {
			while (cap < need)
				cap *= 2;
			char *nb = realloc(s, cap);
			if (nb == NULL) {
				free(s);
				return NULL;
			}
			s = nb;
		}
		len += (size_t)sprintf(s + len, "%s\"%s\"", i ? "," : "", v);
	}
	if (len + 2 > cap) {
		char *nb = realloc(s, len + 2);
		if (nb == NULL) {
			free(s);
			return NULL;
		}
		s = nb;
	}
	s[len++] = '}';
	s[len] = '\0';
	return s;
}

static const char *rev_id(const wsus_result_t *r, size_t i, char *tmp)
{
	(void)tmp;
	return r->revs[i].id;
}

static const char *rev_num(const wsus_result_t *r, size_t i, char *tmp)
{
	snprintf(tmp, 16, "%u", r->revs[i].revision);
	return tmp;
}

static const char *rev_bundled(const wsus_result_t *r, size_t i, char *tmp)
{
	(void)tmp;
	return r->revs[i].bundled;
}

int wsus_sync_remember(PGconn *conn, upstream_job_t *job, const char *selection)
{
	const wsus_result_t *r = &job->wsus_res;
	char *want_for = NULL, *keep = NULL, *ids = NULL, *revs = NULL, *bund = NULL;
	int ret = SS_EOK;
	/* No anchor (nothing listed, or entries skipped): the next sync
	 * starts from a full list. */
	if (asprintf(&want_for, "%s %s", job->url, selection) < 0) {
		want_for = NULL;
		return SS_ENOMEM;
	}
	if ((ret = set_text(conn, "wsus_anchor", r->anchor ? r->anchor : "",
	                    job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = set_text(conn, "wsus_anchor_filter", want_for, job->err,
	                    sizeof(job->err))) != SS_EOK)
		goto out;
	/* Kept entries keep their rows; fetched ones get theirs; only what
	 * the catalog now holds from upstream is remembered. */
	keep = id_array(r->keep, r->n_keep);
	ids = text_array(r->n_revs, rev_id, r);
	revs = text_array(r->n_revs, rev_num, r);
	bund = text_array(r->n_revs, rev_bundled, r);
	if (keep == NULL || ids == NULL || revs == NULL || bund == NULL) {
		ret = SS_ENOMEM;
		goto out;
	}
	const char *pk[] = { keep };
	const char *p[] = { ids, revs, bund };
	if ((ret = db_execp(conn, "DELETE FROM wsus_revisions WHERE NOT (update_id = ANY($1::uuid[]))",
	                    1, pk, job->err, sizeof(job->err))) != SS_EOK ||
	    (ret = db_execp(conn, "INSERT INTO wsus_revisions (update_id, revision, bundled) "
	                    "SELECT DISTINCT ON (t.u) t.u, t.r, t.b "
	                    "FROM unnest($1::uuid[], $2::int[], $3::text[]) AS t(u, r, b) "
	                    "ORDER BY t.u, t.r DESC ON CONFLICT (update_id) DO UPDATE "
	                    "SET revision = EXCLUDED.revision, bundled = EXCLUDED.bundled",
	                    3, p, job->err, sizeof(job->err))) != SS_EOK)
		goto out;
	ret = db_exec(conn, "DELETE FROM wsus_revisions w WHERE NOT EXISTS (SELECT 1 FROM updates u "
	              "WHERE u.update_id = w.update_id AND u.source = 'upstream')",
	              job->err, sizeof(job->err));
out:
	free(want_for);
	free(keep);
	free(ids);
	free(revs);
	free(bund);
	return ret;
}
