/* OpenSSL contexts, peer identity and certificate facts. */
#include "net/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/conf.h"
#include "common/errcode.h"

const char *tls_last_error(char *buf, size_t len)
{
	unsigned long e, last = 0;
	/* libevent queues raw SSL_get_error codes with library 0: skip them. */
	while ((e = ERR_get_error()) != 0)
		if (ERR_GET_LIB(e) != 0)
			last = e;
	if (last == 0)
		snprintf(buf, len, "connection failed");
	else
		ERR_error_string_n(last, buf, len);
	return buf;
}

int tls_ctx_new(const char *ca, const char *cert, const char *key, int server,
                SSL_CTX **out, char *err, size_t errlen)
{
	char ebuf[256];
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (ctx == NULL) {
		snprintf(err, errlen, "SSL_CTX_new: %s", tls_last_error(ebuf, sizeof(ebuf)));
		return SS_ETLS;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	/* Peers that vanish without close_notify are ordinary here (see TOOLCHAIN). */
	SSL_CTX_set_options(ctx, SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
	/* A parent's hundreds of mostly idle links (queued pulls, waiting
	 * children) must not each keep ~34 KB of record buffers; a child has
	 * one link and keeps its buffers. */
	if (server)
		SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
		snprintf(err, errlen, "cannot load CA %s: %s", ca, tls_last_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
		snprintf(err, errlen, "cannot load certificate %s: %s", cert,
		         tls_last_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
		snprintf(err, errlen, "cannot load key %s: %s", key, tls_last_error(ebuf, sizeof(ebuf)));
		goto fail;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		snprintf(err, errlen, "key %s does not match certificate %s", key, cert);
		goto fail;
	}
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | (server ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0), NULL);
	SSL_CTX_set_verify_depth(ctx, 4);
	if (server)
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	*out = ctx;
	return SS_EOK;
fail:
	SSL_CTX_free(ctx);
	return SS_ETLS;
}

static int cert_site(X509 *x, char out[4])
{
	char cn[64] = "";
	X509_NAME *name = X509_get_subject_name(x);
	if (name == NULL || X509_NAME_get_text_by_NID(name, NID_commonName, cn, sizeof(cn)) < 0)
		return SS_EDENIED;
	if (!conf_site_code_valid(cn))
		return SS_EDENIED;
	memcpy(out, cn, 4);
	return SS_EOK;
}

int tls_peer_site(SSL *ssl, char out[4])
{
	if (SSL_get_verify_result(ssl) != X509_V_OK)
		return SS_EDENIED;
	X509 *peer = SSL_get1_peer_certificate(ssl);
	if (peer == NULL)
		return SS_EDENIED;
	int ret = cert_site(peer, out);
	X509_free(peer);
	return ret;
}

X509 *tls_load_cert(const char *path)
{
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return NULL;
	X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
	fclose(f);
	return x;
}

/* tls_load_cert(), saying "cannot read WHAT PATH" in err when it fails. */
static X509 *tls_load_cert_err(const char *path, const char *what, char *err, size_t errlen)
{
	X509 *x = tls_load_cert(path);
	if (x == NULL)
		snprintf(err, errlen, "cannot read %s %s", what, path);
	return x;
}

int tls_cert_site(const char *cert_path, char out[4], char *err, size_t errlen)
{
	X509 *x = tls_load_cert_err(cert_path, "certificate", err, errlen);
	if (x == NULL)
		return SS_ETLS;
	int ret = cert_site(x, out);
	if (ret != SS_EOK)
		snprintf(err, errlen, "certificate %s: common name is not a site code", cert_path);
	X509_free(x);
	return ret;
}

time_t tls_cert_expiry(const char *cert_path)
{
	X509 *x = tls_load_cert(cert_path);
	if (x == NULL)
		return 0;
	struct tm tm;
	time_t t = 0;
	if (ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm) == 1)
		t = timegm(&tm);
	X509_free(x);
	return t;
}

int tls_hierarchy_id(const char *ca_path, uint8_t out[32], char *err, size_t errlen)
{
	X509 *x = tls_load_cert_err(ca_path, "CA certificate", err, errlen);
	if (x == NULL)
		return SS_ETLS;
	unsigned int n = 0;
	int ok = X509_digest(x, EVP_sha256(), out, &n);
	X509_free(x);
	if (!ok || n != 32) {
		snprintf(err, errlen, "cannot hash CA certificate %s", ca_path);
		return SS_ETLS;
	}
	return SS_EOK;
}
