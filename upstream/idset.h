/*
 * A set of 16-byte update ids (uuids), for "have we taken this id yet"
 * while a catalog streams past. Open addressing; grows by doubling.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
	uint8_t *keys;      /* cap * 16 bytes */
	uint8_t *used;      /* cap flags */
	size_t cap;         /* a power of two, or 0 */
	size_t count;
} idset_t;

void idset_init(idset_t *s);
void idset_clear(idset_t *s);

/*!
 * \brief Add \a id.
 * \return 1 if it was not there, 0 if it was, SS_ENOMEM.
 */
int idset_add(idset_t *s, const uint8_t id[16]);

/*! \brief A hash of all 16 bytes (ids from a catalog need not be random). */
uint64_t idset_hash(const uint8_t id[16]);

/*! \brief True when \a id was added. */
bool idset_has(const idset_t *s, const uint8_t id[16]);
