/*
 * Signed status rows (DESIGN §8). A site signs its own status row with the
 * key of its TLS certificate and sends the certificate along; a site that
 * stores a row checks the certificate against the hierarchy's CA, that its
 * common name is the row's site code, and the signature. Relays pass the
 * signed bytes on unchanged, so an intermediate site cannot fake the health
 * of the sites below it.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/evp.h>
#include <openssl/x509.h>

#include "proto/sitesync.pb-c.h"

/* Verified certificates kept: enough for every site of a large hierarchy
 * (figure 7 has 6,276); past it the cache starts over. */
#define ROWSIG_CACHE_MIN 64
#define ROWSIG_CACHE_MAX (1u << 17)

typedef struct {
	uint8_t hash[32];           /* SHA-256 of the DER certificate */
	char site[4];
	bool used;
} rowsig_cached_t;

typedef struct {
	EVP_PKEY *key;              /* this site's private key */
	uint8_t *cert_der;          /* this site's certificate */
	size_t cert_len;
	X509_STORE *store;          /* the hierarchy's CA */
	/* Certificates already verified, open addressing by hash: chain checks
	 * are the expensive part, a subtree reports every heartbeat, and a top
	 * sees every site's certificate (a small ring re-verified thousands of
	 * chains per heartbeat). Moved by value with the rest. */
	rowsig_cached_t *cache;
	size_t cache_cap;           /* a power of two, 0 before the first */
	size_t cache_n;
} rowsig_t;

/*! \brief Load this site's key and certificate and the CA. */
int rowsig_init(rowsig_t *r, const char *ca, const char *cert, const char *key,
                char *err, size_t errlen) __attribute__((warn_unused_result));

void rowsig_clear(rowsig_t *r);

/*!
 * \brief Sign a packed row. \a out gets malloc'd copies of row, signature
 * and certificate (free with rowsig_signed_clear()).
 */
int rowsig_sign(const rowsig_t *r, const uint8_t *row, size_t len, Sitesync__SignedRow *out)
	__attribute__((warn_unused_result));

void rowsig_signed_clear(Sitesync__SignedRow *s);

/*!
 * \brief Verify a signed row and decode it.
 * \param out  Output: the row (sitesync__site_status__free_unpacked).
 * \return SS_EOK, or SS_ESIG with the reason in err.
 */
int rowsig_verify(rowsig_t *r, const Sitesync__SignedRow *s, Sitesync__SiteStatus **out,
                  char *err, size_t errlen) __attribute__((warn_unused_result));
