/* SHAKE128 (FIPS 202) of eight short messages at once, for the LtHash
 * expansion: a catalog of 200,000 entries needs 200,000 expansions of
 * 2 KiB, 13 Keccak-f[1600] permutations each. The eight states live in
 * the eight 64-bit lanes of one vector per Keccak lane, so one pass of
 * the round function permutes all eight; the compiler picks AVX-512, AVX2
 * or plain code at run time (target_clones). Written from the standard;
 * tests/unit/test_digest.c holds it to OpenSSL's SHAKE128. */
#include "catalog/keccak8.h"

#include <string.h>

typedef uint64_t v8_t __attribute__((vector_size(64)));

#define RATE 168               /* SHAKE128: 1600 - 2 * 128 bits */

/* Rotation offsets r[x + 5y] and round constants, FIPS 202 §3.2.2, §3.2.5. */
static const int RHO[25] = {
	0, 1, 62, 28, 27,
	36, 44, 6, 55, 20,
	3, 10, 43, 25, 39,
	41, 45, 15, 21, 8,
	18, 2, 61, 56, 14,
};

static const uint64_t RC[24] = {
	0x0000000000000001ULL, 0x0000000000008082ULL, 0x800000000000808AULL,
	0x8000000080008000ULL, 0x000000000000808BULL, 0x0000000080000001ULL,
	0x8000000080008081ULL, 0x8000000000008009ULL, 0x000000000000008AULL,
	0x0000000000000088ULL, 0x0000000080008009ULL, 0x000000008000000AULL,
	0x000000008000808BULL, 0x800000000000008BULL, 0x8000000000008089ULL,
	0x8000000000008003ULL, 0x8000000000008002ULL, 0x8000000000000080ULL,
	0x000000000000800AULL, 0x800000008000000AULL, 0x8000000080008081ULL,
	0x8000000000008080ULL, 0x0000000080000001ULL, 0x8000000080008008ULL,
};

/* A macro, not a function: a vector argument's ABI differs between the
 * clones. (x >> 64 is never taken: n is 0 only for lane 0.) */
#define ROTL(x, n) ((n) == 0 ? (x) : ((x) << (n)) | ((x) >> (64 - (n))))

/* Keccak-f[1600] on eight states: theta, rho and pi, chi, iota. */
__attribute__((target_clones("avx512f", "avx2", "default")))
static void permute8(v8_t a[25])
{
	for (int r = 0; r < 24; r++) {
		v8_t c[5], b[25];
#pragma GCC unroll 5
		for (int x = 0; x < 5; x++)
			c[x] = a[x] ^ a[x + 5] ^ a[x + 10] ^ a[x + 15] ^ a[x + 20];
#pragma GCC unroll 5
		for (int x = 0; x < 5; x++) {
			v8_t d = c[(x + 4) % 5] ^ ROTL(c[(x + 1) % 5], 1);
#pragma GCC unroll 5
			for (int y = 0; y < 5; y++)
				a[x + 5 * y] ^= d;
		}
#pragma GCC unroll 25
		for (int i = 0; i < 25; i++) {
			int x = i % 5, y = i / 5;
			b[y + 5 * ((2 * x + 3 * y) % 5)] = ROTL(a[i], RHO[i]);
		}
#pragma GCC unroll 25
		for (int i = 0; i < 25; i++) {
			int x = i % 5, y5 = i - x;
			a[i] = b[i] ^ (~b[y5 + (x + 1) % 5] & b[y5 + (x + 2) % 5]);
		}
		a[0] ^= (v8_t){ RC[r], RC[r], RC[r], RC[r], RC[r], RC[r], RC[r], RC[r] };
	}
}

static uint64_t load_le64(const uint8_t *p)
{
	uint64_t v = 0;
	for (int i = 7; i >= 0; i--)
		v = (v << 8) | p[i];
	return v;
}

static inline __attribute__((unused)) void store_le64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

void keccak8_shake128(const uint8_t *const msg[KECCAK8_WAYS], size_t len,
                      uint8_t *const out[KECCAK8_WAYS], size_t outlen)
{
	v8_t a[25];
	memset(a, 0, sizeof(a));
	/* Absorb the single block: message, SHAKE's suffix 1111 and pad10*1. */
	for (int m = 0; m < KECCAK8_WAYS; m++) {
		uint8_t block[RATE];
		memset(block, 0, sizeof(block));
		memcpy(block, msg[m], len);
		block[len] ^= 0x1F;
		block[RATE - 1] ^= 0x80;
		for (int i = 0; i < RATE / 8; i++)
			a[i][m] = load_le64(block + 8 * i);
	}
	for (size_t done = 0; done < outlen; ) {
		permute8(a);
		for (int i = 0; i < RATE / 8 && done < outlen; i++, done += 8) {
			size_t n = outlen - done < 8 ? outlen - done : 8;
			for (int m = 0; m < KECCAK8_WAYS; m++) {
#if __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
				uint64_t w = a[i][m];
				memcpy(out[m] + done, &w, n);
#else
				uint8_t w[8];
				store_le64(w, a[i][m]);
				memcpy(out[m] + done, w, n);
#endif
			}
		}
	}
}
