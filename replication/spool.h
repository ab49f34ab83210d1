/*
 * Parent-side cache of produced pull streams. Children asking for the same
 * delta at the same catalog version share one database read and one file,
 * so serving 250 children costs one scan, not 250.
 */
#pragma once

#include <stdbool.h>
#include <stdint.h>

#include "catalog/stream.h"

struct site;

typedef enum {
	SPOOL_PRODUCING,
	SPOOL_READY,
	SPOOL_FAILED,
} spool_state_t;

struct spool;

/*!
 * \brief Called on the event loop when a stream is produced (or failed);
 * the spool is held for the call. The consumer tells every session
 * waiting on it.
 */
typedef void (*spool_ready_cb)(struct spool *s, void *arg);

typedef struct spool {
	struct spool *next;
	struct site *d;
	/* Key. */
	uint64_t have;
	bool want_full;
	uint64_t at_version;        /* site's version when produced */
	/* Internal. */
	spool_state_t state;
	int refs;                   /* child sessions using or waiting */
	bool busy;                  /* a worker is writing the file */
	int ret;
	spool_ready_cb ready;       /* the consumer, told when produced */
	void *ready_arg;
	char path[512];
	/* What the worker reads, owned by the job: a SIGHUP reload frees the
	 * old configuration and a rotation appends keys while it runs. */
	char site[8];
	manifest_keys_t keys;
	stream_produce_t prod;
	/* Bytes of whole frames in the file while it is produced (the
	 * worker stores, the loop loads): children may be served up to here
	 * before the production ends. */
	atomic_uint_fast64_t published;
} spool_t;

/*!
 * \brief The stream from \a have to the current version, produced on first
 * request. Takes a reference; release with spool_put(). While it is
 * SPOOL_PRODUCING, \a ready(s, \a arg) is called once it is produced; a
 * stream shared by several requests keeps the \a ready of the first, so
 * every caller passes the same consumer hook.
 */
spool_t *spool_get(struct site *d, uint64_t have, bool want_full,
                   spool_ready_cb ready, void *arg);

/*!
 * \brief Streams still being produced that no child waits for any more
 * (it went away): they hold a database worker like a served pull, so
 * admission control counts them.
 */
int spool_producing_unwanted(struct site *d);

/*!
 * \brief Bytes of \a s that may be read now: the whole file once it is
 * produced, the frames published so far while it is being produced.
 */
uint64_t spool_readable(spool_t *s);

/*! \brief Drop a reference; unused streams of older versions are deleted. */
void spool_put(struct site *d, spool_t *s);

/*! \brief Delete unused streams that no longer match the current version. */
void spool_gc(struct site *d);

/*! \brief Remove every stream (shutdown). */
void spool_free_all(struct site *d);

/*! \brief Make the spool directory and empty it of leftovers. */
int spool_dir_prepare(struct site *d, char *err, size_t errlen);
