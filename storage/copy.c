/* Row encoding for PostgreSQL's COPY, text and binary formats. */
#include "storage/copy.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
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

/* Two hex digits per byte value: one table load per input byte. */
static const char HEX_PAIRS[] =
	"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"
	"404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f"
	"606162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f"
	"808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f"
	"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf"
	"c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
	"e0e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff";

void copy_bytea(copybuf_t *c, const uint8_t *p, size_t n)
{
	copy_field_start(c);
	copy_reserve(c, 3 + 2 * n);
	/* "\\x" in COPY text is the bytea hex prefix "\x" after unescaping. */
	char *o = c->buf + c->len;
	*o++ = '\\';
	*o++ = '\\';
	*o++ = 'x';
	for (size_t i = 0; i < n; i++) {
		memcpy(o, HEX_PAIRS + 2 * p[i], 2);
		o += 2;
	}
	c->len = (size_t)(o - c->buf);
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

static void put_be16(copybuf_t *c, uint16_t v)
{
	copy_reserve(c, 2);
	c->buf[c->len++] = (char)(v >> 8);
	c->buf[c->len++] = (char)v;
}

static void put_be32(copybuf_t *c, uint32_t v)
{
	copy_reserve(c, 4);
	for (int shift = 24; shift >= 0; shift -= 8)
		c->buf[c->len++] = (char)(v >> shift);
}

void copy_bin_header(copybuf_t *c)
{
	/* Signature, flags (no OIDs), header extension length. */
	static const char sig[11] = "PGCOPY\n\377\r\n";   /* with its NUL */
	copy_reserve(c, sizeof(sig));
	memcpy(c->buf + c->len, sig, sizeof(sig));
	c->len += sizeof(sig);
	put_be32(c, 0);
	put_be32(c, 0);
}

void copy_bin_row(copybuf_t *c, uint16_t nfields)
{
	put_be16(c, nfields);
}

void copy_bin_bytes(copybuf_t *c, const void *p, size_t n)
{
	put_be32(c, (uint32_t)n);
	copy_reserve(c, n);
	if (n)
		memcpy(c->buf + c->len, p, n);
	c->len += n;
}

void copy_bin_text(copybuf_t *c, const char *s)
{
	copy_bin_bytes(c, s ? s : "", s ? strlen(s) : 0);
}

void copy_bin_int4(copybuf_t *c, int32_t v)
{
	put_be32(c, 4);
	put_be32(c, (uint32_t)v);
}

void copy_bin_bool(copybuf_t *c, bool v)
{
	put_be32(c, 1);
	copy_reserve(c, 1);
	c->buf[c->len++] = v ? 1 : 0;
}

void copy_bin_uuid(copybuf_t *c, const uint8_t u[16])
{
	copy_bin_bytes(c, u, 16);
}

#define TEXT_OID 25

void copy_bin_text_array(copybuf_t *c, char *const *items, size_t n)
{
	/* array_recv layout: ndim, has-nulls flag, element type, then per
	 * dimension its size and lower bound, then the elements. */
	size_t total = 12 + (n ? 8 : 0);
	for (size_t i = 0; i < n; i++)
		total += 4 + strlen(items[i]);
	put_be32(c, (uint32_t)total);
	put_be32(c, n ? 1 : 0);
	put_be32(c, 0);
	put_be32(c, TEXT_OID);
	if (n) {
		put_be32(c, (uint32_t)n);
		put_be32(c, 1);
	}
	for (size_t i = 0; i < n; i++)
		copy_bin_text(c, items[i]);
}

void copy_bin_raw(copybuf_t *c, const void *p, size_t n)
{
	copy_reserve(c, n);
	memcpy(c->buf + c->len, p, n);
	c->len += n;
}

void copy_bin_trailer(copybuf_t *c)
{
	put_be16(c, 0xffff);
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
