/* Escaping for PostgreSQL's COPY text format. */
#include "storage/copy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "server/errcode.h"
#include "storage/db.h"

static void copy_reserve(copybuf_t *c, size_t extra)
{
	if (c->len + extra <= c->cap)
		return;
	size_t cap = c->cap ? c->cap : 65536;
	while (cap < c->len + extra)
		cap *= 2;
	char *nb = realloc(c->buf, cap);
	if (nb == NULL)
		abort();    /* small control allocation pattern: OOM is fatal */
	c->buf = nb;
	c->cap = cap;
}

static void copy_field_start(copybuf_t *c)
{
	if (c->row_open) {
		copy_reserve(c, 1);
		c->buf[c->len++] = '\t';
	}
	c->row_open = true;
}

void copy_init(copybuf_t *c)
{
	memset(c, 0, sizeof(*c));
}

void copy_clear(copybuf_t *c)
{
	free(c->buf);
	free(c->tmp);
	memset(c, 0, sizeof(*c));
}

static void copy_escaped(copybuf_t *c, const char *s, size_t n)
{
	copy_reserve(c, 2 * n);
	char *o = c->buf + c->len;
	for (size_t i = 0; i < n; i++) {
		char ch = s[i];
		switch (ch) {
		case '\\': *o++ = '\\'; *o++ = '\\'; break;
		case '\t': *o++ = '\\'; *o++ = 't'; break;
		case '\n': *o++ = '\\'; *o++ = 'n'; break;
		case '\r': *o++ = '\\'; *o++ = 'r'; break;
		case '\0': break;     /* text cannot hold NUL; drop it */
		default: *o++ = ch;
		}
	}
	c->len = (size_t)(o - c->buf);
}

void copy_textn(copybuf_t *c, const char *s, size_t n)
{
	copy_field_start(c);
	copy_escaped(c, s, n);
}

void copy_text(copybuf_t *c, const char *s)
{
	copy_textn(c, s ? s : "", s ? strlen(s) : 0);
}

void copy_int(copybuf_t *c, int64_t v)
{
	copy_field_start(c);
	copy_reserve(c, 24);
	c->len += (size_t)snprintf(c->buf + c->len, 24, "%" PRId64, v);
}

void copy_bool(copybuf_t *c, bool v)
{
	copy_field_start(c);
	copy_reserve(c, 1);
	c->buf[c->len++] = v ? 't' : 'f';
}

void copy_null(copybuf_t *c)
{
	copy_field_start(c);
	copy_reserve(c, 2);
	c->buf[c->len++] = '\\';
	c->buf[c->len++] = 'N';
}

void copy_bytea(copybuf_t *c, const uint8_t *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	copy_field_start(c);
	copy_reserve(c, 3 + 2 * n);
	/* "\\x" in COPY text is the bytea hex prefix "\x" after unescaping. */
	c->buf[c->len++] = '\\';
	c->buf[c->len++] = '\\';
	c->buf[c->len++] = 'x';
	for (size_t i = 0; i < n; i++) {
		c->buf[c->len++] = hex[p[i] >> 4];
		c->buf[c->len++] = hex[p[i] & 15];
	}
}

void copy_text_array(copybuf_t *c, char *const *items, size_t n)
{
	/* Build the array literal first: {"a","b\"c"} then COPY-escape it. */
	size_t need = 3;
	for (size_t i = 0; i < n; i++)
		need += 3 + 2 * strlen(items[i]);
	if (need > c->tmp_cap) {
		char *nt = realloc(c->tmp, need);
		if (nt == NULL)
			abort();
		c->tmp = nt;
		c->tmp_cap = need;
	}
	char *o = c->tmp;
	*o++ = '{';
	for (size_t i = 0; i < n; i++) {
		if (i)
			*o++ = ',';
		*o++ = '"';
		for (const char *s = items[i]; *s; s++) {
			if (*s == '"' || *s == '\\')
				*o++ = '\\';
			*o++ = *s;
		}
		*o++ = '"';
	}
	*o++ = '}';
	copy_textn(c, c->tmp, (size_t)(o - c->tmp));
}

void copy_end_row(copybuf_t *c)
{
	copy_reserve(c, 1);
	c->buf[c->len++] = '\n';
	c->row_open = false;
}

int copy_flush(PGconn *conn, copybuf_t *c, size_t threshold, char *err,
               size_t errlen)
{
	if (c->len == 0 || c->len < threshold)
		return SS_EOK;
	if (PQputCopyData(conn, c->buf, (int)c->len) != 1) {
		db_errcopy(PQerrorMessage(conn), err, errlen);
		return SS_EDB;
	}
	c->len = 0;
	return SS_EOK;
}

int copy_finish(PGconn *conn, copybuf_t *c, char *err, size_t errlen)
{
	int ret = copy_flush(conn, c, 0, err, errlen);
	if (PQputCopyEnd(conn, ret == SS_EOK ? NULL : "aborted") != 1 && ret == SS_EOK) {
		db_errcopy(PQerrorMessage(conn), err, errlen);
		ret = SS_EDB;
	}
	PGresult *r;
	while ((r = PQgetResult(conn)) != NULL) {
		if (PQresultStatus(r) != PGRES_COMMAND_OK && ret == SS_EOK) {
			db_errcopy(PQresultErrorMessage(r), err, errlen);
			ret = SS_EDB;
		}
		PQclear(r);
	}
	return ret;
}
