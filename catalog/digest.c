/* Order-independent catalog digest arithmetic. */
#include "catalog/digest.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

void digest_entry_hash(uint32_t revision, const uint8_t *content, size_t len,
                       uint8_t out[SS_DIGEST_LEN])
{
	uint8_t rev[4] = {
		(uint8_t)(revision >> 24), (uint8_t)(revision >> 16),
		(uint8_t)(revision >> 8), (uint8_t)revision,
	};
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	/* Allocation failure here is an abort-level condition for the daemon. */
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, rev, sizeof(rev)) ||
	    !EVP_DigestUpdate(ctx, content, len) ||
	    !EVP_DigestFinal_ex(ctx, out, &n))
		abort();
	EVP_MD_CTX_free(ctx);
}

void digest_zero(digest_t *d)
{
	memset(d->b, 0, sizeof(d->b));
}

void digest_add(digest_t *d, const uint8_t h[SS_DIGEST_LEN])
{
	unsigned carry = 0;
	for (int i = SS_DIGEST_LEN - 1; i >= 0; i--) {
		unsigned s = (unsigned)d->b[i] + h[i] + carry;
		d->b[i] = (uint8_t)s;
		carry = s >> 8;
	}
}

void digest_sub(digest_t *d, const uint8_t h[SS_DIGEST_LEN])
{
	int borrow = 0;
	for (int i = SS_DIGEST_LEN - 1; i >= 0; i--) {
		int s = (int)d->b[i] - h[i] - borrow;
		borrow = s < 0;
		d->b[i] = (uint8_t)(s + (borrow ? 256 : 0));
	}
}

bool digest_equal(const digest_t *a, const digest_t *b)
{
	return memcmp(a->b, b->b, SS_DIGEST_LEN) == 0;
}

void digest_hex(const digest_t *d, char out[2 * SS_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < SS_DIGEST_LEN; i++) {
		out[2 * i] = hex[d->b[i] >> 4];
		out[2 * i + 1] = hex[d->b[i] & 15];
	}
	out[2 * SS_DIGEST_LEN] = '\0';
}
