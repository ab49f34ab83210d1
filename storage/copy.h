/*
 * COPY row builder. Bulk writes (pull apply, upstream staging) go through
 * COPY FROM STDIN; this encodes values into a growing buffer and hands it
 * to libpq in large pieces. Text format (copy_text ...) escapes values;
 * binary format (copy_bin_* ..., for COPY ... (FORMAT binary)) writes them
 * as PostgreSQL's send functions would, so bytea needs no hex and the
 * server parses nothing. One COPY uses one format.
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

/*! \brief Binary format: the file header, once before the first row. */
void copy_bin_header(copybuf_t *c);
/*! \brief Binary format: start a row of \a nfields fields. */
void copy_bin_row(copybuf_t *c, uint16_t nfields);
/*! \brief A text or bytea field (text must be valid in the server encoding). */
void copy_bin_bytes(copybuf_t *c, const void *p, size_t n);
/*! \brief A text field; NULL is written as ''. */
void copy_bin_text(copybuf_t *c, const char *s);
void copy_bin_int4(copybuf_t *c, int32_t v);
void copy_bin_bool(copybuf_t *c, bool v);
/*! \brief A uuid field from its 16 bytes. */
void copy_bin_uuid(copybuf_t *c, const uint8_t u[16]);
/*! \brief A text[] field from \a n strings (n = 0: the empty array). */
void copy_bin_text_array(copybuf_t *c, char *const *items, size_t n);
/*! \brief Fields already encoded in binary format (by another copybuf). */
void copy_bin_raw(copybuf_t *c, const void *p, size_t n);
/*! \brief Binary format: the trailer, once after the last row. */
void copy_bin_trailer(copybuf_t *c);

/* Rows go to libpq in pieces below the kernel's socket buffer (~200 KiB),
 * so PostgreSQL reads while the next rows are built instead of the two
 * taking turns. */
#define COPY_PIECE_BYTES (64u << 10)

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
