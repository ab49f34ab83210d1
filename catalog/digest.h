/*
 * Catalog digest: the sum modulo 2^256 of SHA-256(be32(revision) ||
 * content) over every current entry. A sum (not XOR) so that duplicates
 * cannot cancel; order-independent so any site can maintain it
 * incrementally by adding new entries' hashes and subtracting old ones.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SS_DIGEST_LEN 32

typedef struct {
	uint8_t b[SS_DIGEST_LEN];   /* big-endian 256-bit number */
} digest_t;

/*! \brief Hash of one entry's canonical encoding. */
void digest_entry_hash(uint32_t revision, const uint8_t *content, size_t len,
                       uint8_t out[SS_DIGEST_LEN]);

void digest_zero(digest_t *d);
void digest_add(digest_t *d, const uint8_t h[SS_DIGEST_LEN]);
void digest_sub(digest_t *d, const uint8_t h[SS_DIGEST_LEN]);
bool digest_equal(const digest_t *a, const digest_t *b);

/*! \brief Lower-case hex, out must hold 65 bytes. */
void digest_hex(const digest_t *d, char out[2 * SS_DIGEST_LEN + 1]);
