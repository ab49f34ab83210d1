/*
 * Catalog digest: an order-independent, incremental set hash over every
 * current entry, kept in two forms (docs/ARCHITECTURE.md, "Catalog digest").
 *
 * - LtHash16 (Bellare–Micciancio; Lewi et al. 2019): each entry's hash is
 *   expanded with SHAKE128 into 1024 lanes of 16 bits, added lane-wise mod
 *   2^16; removal subtracts. The 2048-byte state is what incremental
 *   updates need; its SHA-256, the "set digest", is what goes on the wire
 *   and into the signed manifest (protocol 3). Collision resistant: finding
 *   two sets with one state is a short-vector problem in a lattice.
 * - The protocol-2 sum: SHA-256 entry hashes added mod 2^256. Forgeable by
 *   the generalised birthday attack, so it is no longer checked by this
 *   site; it is kept alongside only so protocol-2 children (which check
 *   it) can be served during a rolling upgrade.
 *
 * Both are a sum (not XOR), so a duplicate entry never cancels.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SS_DIGEST_LEN 32           /* entry hash, protocol-2 sum, set digest */
#define SS_LTHASH_LANES 1024
#define SS_LTHASH_BYTES (2 * SS_LTHASH_LANES)

typedef struct {
	uint8_t b[SS_DIGEST_LEN];          /* protocol-2 sum, big-endian 256-bit number */
	uint16_t lane[SS_LTHASH_LANES];    /* LtHash16 state */
} digest_t;

/*! \brief Hash of one entry's canonical encoding be32(revision) || content. */
void digest_entry_hash(uint32_t revision, const uint8_t *content, size_t len,
                       uint8_t out[SS_DIGEST_LEN]);

void digest_zero(digest_t *d);
/*! \brief Add one entry (by its entry hash) to both forms. */
void digest_add(digest_t *d, const uint8_t h[SS_DIGEST_LEN]);
/*! \brief digest_add() of \p n entries, eight expansions at a time. */
void digest_add_many(digest_t *d, const uint8_t (*h)[SS_DIGEST_LEN], size_t n);

/* Entry hashes gathered for digest_add_many(): what a loop over a stream
 * or a query's rows adds one at a time. Flush before reading \a into. */
#define SS_DIGEST_BATCH 64
typedef struct {
	digest_t *into;
	size_t n;
	uint8_t h[SS_DIGEST_BATCH][SS_DIGEST_LEN];
} digest_batch_t;

void digest_batch_init(digest_batch_t *b, digest_t *into);
/*! \brief Queue one entry hash; adds the batch when it is full. */
void digest_batch_add(digest_batch_t *b, const uint8_t h[SS_DIGEST_LEN]);
/*! \brief Add what is queued. */
void digest_batch_flush(digest_batch_t *b);

/*! \brief Remove one entry (by its entry hash) from both forms. */
void digest_sub(digest_t *d, const uint8_t h[SS_DIGEST_LEN]);
/*! \brief The protocol-2 sum alone: add / subtract one entry hash. */
void digest_sum_add(uint8_t sum[SS_DIGEST_LEN], const uint8_t h[SS_DIGEST_LEN]);
void digest_sum_sub(uint8_t sum[SS_DIGEST_LEN], const uint8_t h[SS_DIGEST_LEN]);
/*! \brief Add (or, with \a neg, subtract) every lane and the sum of \a x to \a d. */
void digest_merge(digest_t *d, const digest_t *x, bool neg);
/*! \brief Both forms equal. */
bool digest_equal(const digest_t *a, const digest_t *b);

/*! \brief The set digest: SHA-256 of the serialised LtHash state. */
void digest_set_hash(const digest_t *d, uint8_t out[SS_DIGEST_LEN]);

/*! \brief The LtHash state as stored: lanes little-endian. */
void digest_state_bytes(const digest_t *d, uint8_t out[SS_LTHASH_BYTES]);
/*! \brief Load a stored LtHash state (the sum is left as it is). */
void digest_state_load(digest_t *d, const uint8_t in[SS_LTHASH_BYTES]);

/*! \brief Protocol-2 sum in lower-case hex, out must hold 65 bytes. */
void digest_hex(const digest_t *d, char out[2 * SS_DIGEST_LEN + 1]);
/*! \brief Set digest in lower-case hex, out must hold 65 bytes. */
void digest_set_hex(const digest_t *d, char out[2 * SS_DIGEST_LEN + 1]);
/*! \brief Any 32 bytes in lower-case hex, out must hold 65 bytes. */
void digest_bytes_hex(const uint8_t b[SS_DIGEST_LEN], char out[2 * SS_DIGEST_LEN + 1]);
