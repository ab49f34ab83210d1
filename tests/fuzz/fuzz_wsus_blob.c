/*
 * libFuzzer target: the compressed update blob decoder (upstream/wsus_xml.h):
 * the input is the Cabinet's bytes, base64-encoded here as the SOAP answer
 * carries them, so mutations reach libmspack's LZX / MSZIP paths and the
 * UTF-16LE conversion; whatever decodes is mapped as an update document.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/errcode.h"
#include "upstream/wsus_xml.h"

static char *fuzz_b64(const uint8_t *d, size_t n)
{
	static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *o = malloc((n + 2) / 3 * 4 + 1), *q = o;
	if (o == NULL)
		abort();
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (i + 1 < n ? (uint32_t)d[i + 1] << 8 : 0) |
		             (i + 2 < n ? d[i + 2] : 0);
		*q++ = t[v >> 18];
		*q++ = t[(v >> 12) & 63];
		*q++ = i + 1 < n ? t[(v >> 6) & 63] : '=';
		*q++ = i + 2 < n ? t[v & 63] : '=';
	}
	*q = '\0';
	return o;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *b64 = fuzz_b64(data, size);
	char *xml = NULL;
	size_t len = 0;
	char err[256];
	if (wsus_blob_decode(b64, strlen(b64), 0, &xml, &len, err, sizeof(err)) == SS_EOK) {
		if (xml == NULL || strlen(xml) != len)
			abort();    /* NUL-terminated, no NUL inside */
		wsus_update_t u;
		if (wsus_update_parse(xml, len, NULL, 0, &u, err, sizeof(err)) == SS_EOK)
			wsus_update_clear(&u);
	}
	free(xml);
	free(b64);
	return 0;
}
