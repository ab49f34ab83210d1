/*
 * The pull stream: PullStart, Batch..., PullDone, as framed bytes in a
 * file. A parent produces it once per (from, to) pair and every child that
 * needs that delta is served from the same file; a child stores what it
 * receives in the same format and applies it; an export bundle is the same
 * stream between a BundleHeader and a BundleEnd. One format, three uses.
 */
#pragma once

#include <libpq-fe.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "proto/frame.h"
#include "catalog/digest.h"
#include "catalog/manifest.h"

/* Test hooks (SITESYNC_TEST_TAMPER) making a relay forge what it serves. */
typedef enum {
	STREAM_TAMPER_NONE = 0,
	STREAM_TAMPER_BATCH,       /* alter one entry, fix up both digests */
	STREAM_TAMPER_SET,         /* alter one entry, fix up the protocol-2 sum only */
} stream_tamper_t;

typedef struct {
	/* Set by the caller. */
	uint64_t have;             /* version the receiver holds */
	bool want_full;            /* force a snapshot */
	int batch_entries;         /* entries per Batch frame */
	size_t batch_bytes;        /* soft cap on a Batch frame's size */
	const manifest_keys_t *keys; /* top site: signs manifests it has not stored */
	const char *site;          /* this site's code, for manifests it signs */
	stream_tamper_t tamper;    /* test hook: forge one entry */
	atomic_uint_fast64_t *disk_used; /* bytes of every producer's files, or NULL */
	uint64_t disk_limit;       /* fail with SS_ENOSPC once disk_used passes it */
	/* Or NULL. Bytes of whole frames flushed to the file so far: a
	 * reader on another thread may serve up to there while the rest is
	 * still being produced. */
	atomic_uint_fast64_t *published;

	/* Results. */
	uint64_t from;             /* 0 when full */
	uint64_t to;
	bool full;
	uint64_t upserts;
	uint64_t deletes;
	uint64_t entries;          /* catalog size at `to` */
	digest_t digest;           /* catalog digest at `to` (both forms) */
	uint8_t set_digest[SS_DIGEST_LEN]; /* its set digest, signed and sent */
	uint64_t bytes;            /* bytes written */
	char err[256];
} stream_produce_t;

/*!
 * \brief Write the pull stream from \a p->have to the current version,
 * read in one repeatable-read snapshot so version, digest and rows agree.
 * A snapshot is sent when asked, when have is 0, or when the change log no
 * longer reaches back to have.
 */
int stream_produce(PGconn *conn, stream_produce_t *p, FILE *out)
	__attribute__((warn_unused_result));

/*! \brief Append one frame to a stream file. */
int stream_write_frame(FILE *out, const frame_t *f, uint64_t *bytes)
	__attribute__((warn_unused_result));

typedef struct {
	FILE *f;
	size_t limit;
	struct stream_feed *feed;  /* set: the file is still being written */
	int feed_wait;             /* seconds to wait for its next frame */
	uint64_t offset;           /* bytes consumed so far */
	uint8_t *buf;              /* last frame: header + body */
	size_t cap;
	size_t len;
} stream_reader_t;

int stream_reader_open(stream_reader_t *r, const char *path, size_t limit)
	__attribute__((warn_unused_result));

/*!
 * \brief Read the next whole frame (header + body) of a stream file into
 * \a *buf, grown (realloc) to \a *cap as needed; \a *len is its size.
 * \return SS_EOK; 1 at a clean end of file; SS_ETRUNC if the file ends
 *         inside a frame; SS_EIO, SS_ENOMEM, or the header's error.
 */
int stream_read_raw(FILE *f, size_t limit, uint8_t **buf, size_t *cap, size_t *len)
	__attribute__((warn_unused_result));

/*!
 * \brief Next frame of a stream file.
 * \param out  Output: decoded frame, free with frame_free().
 * \return SS_EOK; 1 at a clean end of file; SS_ETRUNC if the file ends
 *         inside a frame; SS_EMALF / SS_ETOOBIG for bad frames.
 */
int stream_reader_next(stream_reader_t *r, frame_t **out);

/*!
 * \brief Position a stream file at \a offset if a frame starts there (or
 * the file ends there), found by walking the frame headers from the start.
 * \return SS_EOK, or SS_EMALF when \a offset falls inside a frame or the
 *         headers before it are bad.
 */
int stream_seek_frame(FILE *f, uint64_t offset, size_t limit)
	__attribute__((warn_unused_result));

/*! \brief Raw bytes (header + body) of the frame last returned. */
const uint8_t *stream_reader_raw(const stream_reader_t *r, size_t *len);

void stream_reader_close(stream_reader_t *r);
