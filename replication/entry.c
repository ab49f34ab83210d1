/* Entry decoding, hashing and COPY row writing. */
#include "replication/entry.h"

#include <string.h>

#include "proto/sitesync.pb-c.h"
#include "server/errcode.h"

bool entry_id_valid(const char *id)
{
	if (id == NULL || strlen(id) != 36)
		return false;
	for (int i = 0; i < 36; i++) {
		char ch = id[i];
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (ch != '-')
				return false;
		} else if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f'))) {
			return false;
		}
	}
	return true;
}

int entry_copy_row(copybuf_t *cb, const char *id, uint32_t revision,
                   const uint8_t *content, size_t len,
                   uint8_t hash[SS_DIGEST_LEN], bool *expired)
{
	Sitesync__UpdateContent *u = sitesync__update_content__unpack(NULL, len, content);
	if (u == NULL)
		return SS_EMALF;
	if (!entry_id_valid(id) || strcmp(u->update_id, id) != 0) {
		sitesync__update_content__free_unpacked(u, NULL);
		return SS_EMALF;
	}
	digest_entry_hash(revision, content, len, hash);
	copy_text(cb, id);
	copy_int(cb, revision);
	copy_text(cb, u->title);
	copy_text(cb, u->vendor);
	copy_text_array(cb, u->products, u->n_products);
	copy_text(cb, u->classification);
	copy_text_array(cb, u->languages, u->n_languages);
	copy_text(cb, u->severity);
	copy_text(cb, u->kb_article);
	copy_text(cb, u->release_date);
	copy_bool(cb, u->expired);
	copy_text(cb, u->source[0] ? u->source : "upstream");
	copy_text_array(cb, u->supersedes, u->n_supersedes);
	copy_bytea(cb, hash, SS_DIGEST_LEN);
	copy_bytea(cb, content, len);
	if (expired)
		*expired = u->expired;
	sitesync__update_content__free_unpacked(u, NULL);
	return SS_EOK;
}
