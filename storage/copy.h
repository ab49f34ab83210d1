/*
 * COPY text-format row builder. Bulk writes (pull apply, upstream staging)
 * go through COPY FROM STDIN; this escapes values into a growing buffer
 * and hands it to libpq in large pieces.
 */
#pragma once

#include <libpq-fe.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	char *buf;
	size_t len;
	size_t cap;
	bool row_open;      /* a field was written in the current row */
	char *tmp;          /* scratch for array literals */
	size_t tmp_cap;
} copybuf_t;

void copy_init(copybuf_t *c);
void copy_clear(copybuf_t *c);

void copy_text(copybuf_t *c, const char *s);
void copy_textn(copybuf_t *c, const char *s, size_t n);
void copy_int(copybuf_t *c, int64_t v);
void copy_bool(copybuf_t *c, bool v);
void copy_null(copybuf_t *c);
void copy_bytea(copybuf_t *c, const uint8_t *p, size_t n);
/*! \brief A text[] value from \a n strings. */
void copy_text_array(copybuf_t *c, char *const *items, size_t n);
void copy_end_row(copybuf_t *c);

/*!
 * \brief Send buffered rows when over \a threshold bytes (0 = always).
 * \return SS_EOK or SS_EDB with the message in err.
 */
int copy_flush(PGconn *conn, copybuf_t *c, size_t threshold, char *err,
               size_t errlen);

/*!
 * \brief Flush, end the COPY and check its result.
 */
int copy_finish(PGconn *conn, copybuf_t *c, char *err, size_t errlen);
