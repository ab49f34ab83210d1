/*
 * libFuzzer target: catalog entries (catalog/entry.h). The input is
 * 4 bytes of revision then an UpdateContent as relayed in a Batch: decode
 * it, then write its COPY row under the id it names (and under a fixed
 * id, which must be refused unless it matches).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sitesync.pb-c.h"
#include "catalog/entry.h"
#include "common/errcode.h"
#include "storage/copy.h"

static const char fuzz_fixed_id[] = "00000000-0000-4000-8000-000000000000";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 4)
		return 0;
	uint32_t revision = (uint32_t)data[0] << 24 | (uint32_t)data[1] << 16 |
	                    (uint32_t)data[2] << 8 | data[3];
	const uint8_t *content = data + 4;
	size_t len = size - 4;

	Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, len, content);
	copybuf_t cb;
	copy_init(&cb);
	uint8_t hash[SS_DIGEST_LEN];
	bool expired = false;
	if (u != NULL) {
		int ret = entry_copy_row(&cb, u->update_id, revision, content, len,
		                         hash, &expired);
		if (ret == SS_EOK) {
			if (!entry_id_valid(u->update_id) || expired != u->expired)
				abort();
		} else if (entry_id_valid(u->update_id)) {
			abort();    /* decodable content with a valid id refused */
		}
	}
	int ret = entry_copy_row(&cb, fuzz_fixed_id, revision, content, len, hash, NULL);
	if (ret == SS_EOK) {
		if (u == NULL || strcmp(u->update_id, fuzz_fixed_id) != 0)
			abort();    /* accepted content that names another update */
	}
	if (u != NULL)
		sitesync__update_content__free_unpacked(u, NULL);
	copy_clear(&cb);
	return 0;
}
