/*
 * TLS contexts for the replication links: TLS 1.3 only, mutual
 * authentication against the hierarchy's CA, and the site code taken from
 * the peer certificate's common name.
 */
#pragma once

#include <stdint.h>
#include <time.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

/*!
 * \brief Build a context from PEM files.
 * \param server  true for the listener (requires client certificates).
 * \param out     Output: the context, free with SSL_CTX_free().
 */
int tls_ctx_new(const char *ca, const char *cert, const char *key, int server,
                SSL_CTX **out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief The site code (certificate CN) of a verified peer.
 * \return SS_EOK, or SS_EDENIED when there is no verified certificate or
 *         its CN is not a site code.
 */
int tls_peer_site(SSL *ssl, char out[4]);

/*! \brief Read a PEM certificate file; NULL if unreadable. Caller X509_free()s. */
X509 *tls_load_cert(const char *path);

/*! \brief Site code in a PEM certificate file. */
int tls_cert_site(const char *cert_path, char out[4], char *err, size_t errlen);

/*! \brief notAfter of a PEM certificate file as unix time, 0 if unreadable. */
time_t tls_cert_expiry(const char *cert_path);

/*!
 * \brief Identity of the hierarchy: SHA-256 of the CA certificate (DER).
 */
int tls_hierarchy_id(const char *ca_path, uint8_t out[32], char *err, size_t errlen);

/*! \brief Most recent OpenSSL error as text, skipping libevent's raw codes. */
const char *tls_last_error(char *buf, size_t len);
