/* Order-independent catalog digest arithmetic: LtHash16 and the protocol-2 sum. */
#include "catalog/digest.h"
#include "catalog/keccak8.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>

/* Domain separation: an LtHash element is SHAKE128(tag || entry hash), so
 * no other use of SHAKE128 over entry hashes yields the same lanes. */
static const uint8_t LT_TAG[] = "sitesync lthash16 v1";
static const uint8_t SET_TAG[] = "sitesync set digest v1";

static EVP_MD *shake, *sha256;
static pthread_once_t shake_once = PTHREAD_ONCE_INIT;

/* Fetched once: the implicit fetch behind EVP_shake128() or EVP_sha256()
 * costs more than the hashing of a small entry. */
static void shake_fetch(void)
{
	shake = EVP_MD_fetch(NULL, "SHAKE128", NULL);
	sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
}

void digest_entry_hash(uint32_t revision, const uint8_t *content, size_t len,
                       uint8_t out[SS_DIGEST_LEN])
{
	uint8_t rev[4] = {
		(uint8_t)(revision >> 24), (uint8_t)(revision >> 16),
		(uint8_t)(revision >> 8), (uint8_t)revision,
	};
	pthread_once(&shake_once, shake_fetch);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	/* Allocation failure here is an abort-level condition for the daemon. */
	if (sha256 == NULL || ctx == NULL || !EVP_DigestInit_ex(ctx, sha256, NULL) ||
	    !EVP_DigestUpdate(ctx, rev, sizeof(rev)) ||
	    !EVP_DigestUpdate(ctx, content, len) ||
	    !EVP_DigestFinal_ex(ctx, out, &n))
		abort();
	EVP_MD_CTX_free(ctx);
}

/* The 1024 lanes of one entry: SHAKE128 output read as little-endian u16. */
static void lt_expand(const uint8_t h[SS_DIGEST_LEN], uint16_t lanes[SS_LTHASH_LANES])
{
	uint8_t buf[SS_LTHASH_BYTES];
	pthread_once(&shake_once, shake_fetch);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	if (shake == NULL || ctx == NULL || !EVP_DigestInit_ex(ctx, shake, NULL) ||
	    !EVP_DigestUpdate(ctx, LT_TAG, sizeof(LT_TAG) - 1) ||
	    !EVP_DigestUpdate(ctx, h, SS_DIGEST_LEN) ||
	    !EVP_DigestFinalXOF(ctx, buf, sizeof(buf)))
		abort();
	EVP_MD_CTX_free(ctx);
	for (int i = 0; i < SS_LTHASH_LANES; i++)
		lanes[i] = (uint16_t)(buf[2 * i] | (buf[2 * i + 1] << 8));
}

void digest_sum_add(uint8_t b[SS_DIGEST_LEN], const uint8_t h[SS_DIGEST_LEN])
{
	unsigned carry = 0;
	for (int i = SS_DIGEST_LEN - 1; i >= 0; i--) {
		unsigned s = (unsigned)b[i] + h[i] + carry;
		b[i] = (uint8_t)s;
		carry = s >> 8;
	}
}

void digest_sum_sub(uint8_t b[SS_DIGEST_LEN], const uint8_t h[SS_DIGEST_LEN])
{
	int borrow = 0;
	for (int i = SS_DIGEST_LEN - 1; i >= 0; i--) {
		int s = (int)b[i] - h[i] - borrow;
		borrow = s < 0;
		b[i] = (uint8_t)(s + (borrow ? 256 : 0));
	}
}

void digest_zero(digest_t *d)
{
	memset(d, 0, sizeof(*d));
}

void digest_add(digest_t *d, const uint8_t h[SS_DIGEST_LEN])
{
	uint16_t x[SS_LTHASH_LANES];
	lt_expand(h, x);
	for (int i = 0; i < SS_LTHASH_LANES; i++)
		d->lane[i] = (uint16_t)(d->lane[i] + x[i]);
	digest_sum_add(d->b, h);
}

void digest_add_many(digest_t *d, const uint8_t (*h)[SS_DIGEST_LEN], size_t n)
{
	enum { TAG = sizeof(LT_TAG) - 1 };
	_Static_assert(TAG + SS_DIGEST_LEN <= KECCAK8_MAX_LEN, "one SHAKE128 block");
	uint8_t in[KECCAK8_WAYS][TAG + SS_DIGEST_LEN];
	uint8_t buf[KECCAK8_WAYS][SS_LTHASH_BYTES];
	const uint8_t *msg[KECCAK8_WAYS];
	uint8_t *out[KECCAK8_WAYS];
	for (int m = 0; m < KECCAK8_WAYS; m++) {
		memcpy(in[m], LT_TAG, TAG);
		msg[m] = in[m];
		out[m] = buf[m];
	}
	for (size_t k = 0; k < n; k += KECCAK8_WAYS) {
		size_t ways = n - k < KECCAK8_WAYS ? n - k : KECCAK8_WAYS;
		/* A short last group repeats its first entry in the unused ways. */
		for (size_t m = 0; m < KECCAK8_WAYS; m++)
			memcpy(in[m] + TAG, h[k + (m < ways ? m : 0)], SS_DIGEST_LEN);
		keccak8_shake128(msg, TAG + SS_DIGEST_LEN, out, SS_LTHASH_BYTES);
		for (size_t m = 0; m < ways; m++) {
			uint16_t x[SS_LTHASH_LANES];
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
			memcpy(x, buf[m], sizeof(x));
#else
			for (int i = 0; i < SS_LTHASH_LANES; i++)
				x[i] = (uint16_t)(buf[m][2 * i] | (buf[m][2 * i + 1] << 8));
#endif
			for (int i = 0; i < SS_LTHASH_LANES; i++)
				d->lane[i] = (uint16_t)(d->lane[i] + x[i]);
			digest_sum_add(d->b, h[k + m]);
		}
	}
}

void digest_batch_init(digest_batch_t *b, digest_t *into)
{
	b->into = into;
	b->n = 0;
}

void digest_batch_add(digest_batch_t *b, const uint8_t h[SS_DIGEST_LEN])
{
	memcpy(b->h[b->n++], h, SS_DIGEST_LEN);
	if (b->n == SS_DIGEST_BATCH)
		digest_batch_flush(b);
}

void digest_batch_flush(digest_batch_t *b)
{
	digest_add_many(b->into, (const uint8_t (*)[SS_DIGEST_LEN])b->h, b->n);
	b->n = 0;
}

void digest_sub(digest_t *d, const uint8_t h[SS_DIGEST_LEN])
{
	uint16_t x[SS_LTHASH_LANES];
	lt_expand(h, x);
	for (int i = 0; i < SS_LTHASH_LANES; i++)
		d->lane[i] = (uint16_t)(d->lane[i] - x[i]);
	digest_sum_sub(d->b, h);
}

void digest_merge(digest_t *d, const digest_t *x, bool neg)
{
	for (int i = 0; i < SS_LTHASH_LANES; i++)
		d->lane[i] = (uint16_t)(neg ? d->lane[i] - x->lane[i] : d->lane[i] + x->lane[i]);
	if (neg)
		digest_sum_sub(d->b, x->b);
	else
		digest_sum_add(d->b, x->b);
}

bool digest_equal(const digest_t *a, const digest_t *b)
{
	return memcmp(a->b, b->b, SS_DIGEST_LEN) == 0 &&
	       memcmp(a->lane, b->lane, sizeof(a->lane)) == 0;
}

void digest_state_bytes(const digest_t *d, uint8_t out[SS_LTHASH_BYTES])
{
	for (int i = 0; i < SS_LTHASH_LANES; i++) {
		out[2 * i] = (uint8_t)d->lane[i];
		out[2 * i + 1] = (uint8_t)(d->lane[i] >> 8);
	}
}

void digest_state_load(digest_t *d, const uint8_t in[SS_LTHASH_BYTES])
{
	for (int i = 0; i < SS_LTHASH_LANES; i++)
		d->lane[i] = (uint16_t)(in[2 * i] | (in[2 * i + 1] << 8));
}

void digest_set_hash(const digest_t *d, uint8_t out[SS_DIGEST_LEN])
{
	uint8_t st[SS_LTHASH_BYTES];
	digest_state_bytes(d, st);
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	unsigned int n = 0;
	if (ctx == NULL || !EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) ||
	    !EVP_DigestUpdate(ctx, SET_TAG, sizeof(SET_TAG) - 1) ||
	    !EVP_DigestUpdate(ctx, st, sizeof(st)) ||
	    !EVP_DigestFinal_ex(ctx, out, &n))
		abort();
	EVP_MD_CTX_free(ctx);
}

void digest_bytes_hex(const uint8_t b[SS_DIGEST_LEN], char out[2 * SS_DIGEST_LEN + 1])
{
	static const char hex[] = "0123456789abcdef";
	for (int i = 0; i < SS_DIGEST_LEN; i++) {
		out[2 * i] = hex[b[i] >> 4];
		out[2 * i + 1] = hex[b[i] & 15];
	}
	out[2 * SS_DIGEST_LEN] = '\0';
}

void digest_hex(const digest_t *d, char out[2 * SS_DIGEST_LEN + 1])
{
	digest_bytes_hex(d->b, out);
}

void digest_set_hex(const digest_t *d, char out[2 * SS_DIGEST_LEN + 1])
{
	uint8_t h[SS_DIGEST_LEN];
	digest_set_hash(d, h);
	digest_bytes_hex(h, out);
}
