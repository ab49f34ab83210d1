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

#define ROWSIG_CACHE 64

typedef struct {
	EVP_PKEY *key;              /* this site's private key */
	uint8_t *cert_der;          /* this site's certificate */
	size_t cert_len;
	X509_STORE *store;          /* the hierarchy's CA */
	/* Certificates already verified: hash -> site code (chain checks are
	 * the expensive part and a subtree reports every heartbeat). */
	uint8_t cache_hash[ROWSIG_CACHE][32];
	char cache_site[ROWSIG_CACHE][4];
	int cache_n;
	int cache_next;
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
