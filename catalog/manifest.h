/*
 * Signed catalog manifests (DESIGN §8). The top site signs, with Ed25519,
 * what each catalog version is: its number, digest, entry count and
 * predecessor. Every other site verifies the signature against the
 * hierarchy's public key(s) before it commits a pull or an import, and
 * relays the manifest unchanged, so no intermediate site can alter or
 * inject update metadata. A manifest may announce the next public key
 * (rotation): signed by the old key, it makes the new one trusted too.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>

#include "proto/sitesync.pb-c.h"

#define MANIFEST_MAX_KEYS 4

typedef struct {
	EVP_PKEY *sign_key;                    /* top site only */
	uint8_t next_key[32];                  /* announced in manifests, raw */
	bool have_next_key;
	EVP_PKEY *trusted[MANIFEST_MAX_KEYS];  /* keys whose signatures count */
	int n_trusted;
} manifest_keys_t;

/*!
 * \brief Load keys from PEM files (any may be NULL).
 * \param sign_path  Ed25519 private key of the top site.
 * \param pub_path   the hierarchy's public key.
 * \param next_path  public key to announce for rotation.
 */
int manifest_keys_load(manifest_keys_t *k, const char *sign_path, const char *pub_path,
                       const char *next_path, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief Trust one more raw 32-byte Ed25519 public key. */
int manifest_keys_trust_raw(manifest_keys_t *k, const uint8_t *raw, size_t len);

void manifest_keys_clear(manifest_keys_t *k);

/*!
 * \brief Pack and sign a manifest.
 * \param out, sig  Output: malloc'd bytes, caller frees.
 */
int manifest_sign(const manifest_keys_t *k, const Sitesync__Manifest *m,
                  uint8_t **out, size_t *out_len, uint8_t **sig, size_t *sig_len)
	__attribute__((warn_unused_result));

/*!
 * \brief Check a manifest's signature against the trusted keys and that it
 * vouches for exactly (version, set digest, entries). Protocol 3: the
 * manifest's protocol-2 `digest` is not checked (it is forgeable), and a
 * manifest without `set_digest` is refused.
 * \param out  Output: the decoded manifest (free with
 *             sitesync__manifest__free_unpacked), may be NULL.
 * \return SS_EOK or SS_ESIG with a message.
 */
int manifest_verify(const manifest_keys_t *k, const uint8_t *m, size_t mlen,
                    const uint8_t *sig, size_t siglen, uint64_t version,
                    const uint8_t set_digest[32], uint64_t entries,
                    Sitesync__Manifest **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));
