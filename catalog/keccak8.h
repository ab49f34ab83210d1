/*
 * SHAKE128 of eight messages at once: the LtHash expansion of a batch of
 * entries (catalog/digest.c, digest_add_many()).
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#define KECCAK8_WAYS 8
#define KECCAK8_MAX_LEN 167    /* one SHAKE128 block, less the padding byte */

/*!
 * \brief SHAKE128(msg[m]) for m = 0..7, each \p outlen bytes into out[m].
 * \param len  Length of every message, at most KECCAK8_MAX_LEN.
 */
void keccak8_shake128(const uint8_t *const msg[KECCAK8_WAYS], size_t len,
                      uint8_t *const out[KECCAK8_WAYS], size_t outlen);
