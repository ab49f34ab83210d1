/* Open-addressing set of 16-byte ids. */
#include "upstream/idset.h"

#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"

void idset_init(idset_t *s)
{
	memset(s, 0, sizeof(*s));
}

void idset_clear(idset_t *s)
{
	free(s->keys);
	free(s->used);
	idset_init(s);
}

uint64_t idset_hash(const uint8_t id[16])
{
	uint64_t a, b;
	memcpy(&a, id, 8);
	memcpy(&b, id + 8, 8);
	uint64_t h = (a ^ (b * 0x9e3779b97f4a7c15ULL)) * 0xff51afd7ed558ccdULL;
	return h ^ (h >> 32);
}

static size_t idset_slot(const uint8_t id[16], size_t mask)
{
	return (size_t)idset_hash(id) & mask;
}

static void idset_put(uint8_t *keys, uint8_t *used, size_t mask, const uint8_t id[16])
{
	size_t i = idset_slot(id, mask);
	while (used[i])
		i = (i + 1) & mask;
	used[i] = 1;
	memcpy(keys + i * 16, id, 16);
}

static int idset_grow(idset_t *s)
{
	size_t cap = s->cap ? s->cap * 2 : 1024;
	uint8_t *keys = malloc(cap * 16), *used = calloc(cap, 1);
	if (keys == NULL || used == NULL) {
		free(keys);
		free(used);
		return SS_ENOMEM;
	}
	for (size_t i = 0; i < s->cap; i++)
		if (s->used[i])
			idset_put(keys, used, cap - 1, s->keys + i * 16);
	free(s->keys);
	free(s->used);
	s->keys = keys;
	s->used = used;
	s->cap = cap;
	return SS_EOK;
}

int idset_add(idset_t *s, const uint8_t id[16])
{
	/* At most half full, so probes stay short. */
	if ((s->count + 1) * 2 > s->cap && idset_grow(s) != SS_EOK)
		return SS_ENOMEM;
	size_t mask = s->cap - 1, i = idset_slot(id, mask);
	while (s->used[i]) {
		if (memcmp(s->keys + i * 16, id, 16) == 0)
			return 0;
		i = (i + 1) & mask;
	}
	s->used[i] = 1;
	memcpy(s->keys + i * 16, id, 16);
	s->count++;
	return 1;
}

bool idset_has(const idset_t *s, const uint8_t id[16])
{
	if (s->count == 0)
		return false;
	size_t mask = s->cap - 1, i = idset_slot(id, mask);
	while (s->used[i]) {
		if (memcmp(s->keys + i * 16, id, 16) == 0)
			return true;
		i = (i + 1) & mask;
	}
	return false;
}
