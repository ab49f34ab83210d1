/* Entry decoding, hashing and COPY row writing. */
#include "catalog/entry.h"

#include <string.h>

#include "proto/sitesync.pb-c.h"
#include "common/errcode.h"

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

void entry_id_bytes(const char *id, uint8_t out[16])
{
	int k = 0;
	for (const char *c = id; *c && k < 32; c++) {
		if (*c == '-')
			continue;
		int v = *c <= '9' ? *c - '0' : *c - 'a' + 10;
		if (k & 1)
			out[k / 2] |= (uint8_t)v;
		else
			out[k / 2] = (uint8_t)(v << 4);
		k++;
	}
}

void entry_id_format(const uint8_t b[16], char out[37])
{
	static const char hex[] = "0123456789abcdef";
	int o = 0;
	for (int i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		out[o++] = hex[b[i] >> 4];
		out[o++] = hex[b[i] & 15];
	}
	out[o] = '\0';
}

void entry_copy_fields(copybuf_t *cb, const Sitesync__UpdateContent *u)
{
	copy_bin_text(cb, u->title);
	copy_bin_text(cb, u->vendor);
	copy_bin_text_array(cb, u->products, u->n_products);
	copy_bin_text(cb, u->classification);
	copy_bin_text_array(cb, u->languages, u->n_languages);
	copy_bin_text(cb, u->severity);
	copy_bin_text(cb, u->kb_article);
	copy_bin_text(cb, u->release_date);
	copy_bin_bool(cb, u->expired);
	copy_bin_text(cb, u->source && u->source[0] ? u->source : "upstream");
	copy_bin_text_array(cb, u->supersedes, u->n_supersedes);
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
	/* Binary: the content goes as its own bytes, not twice their size in
	 * hex, and PostgreSQL parses nothing. */
	uint8_t uuid[16];
	entry_id_bytes(id, uuid);
	copy_bin_uuid(cb, uuid);
	copy_bin_int4(cb, (int32_t)revision);
	entry_copy_fields(cb, u);
	copy_bin_bytes(cb, hash, SS_DIGEST_LEN);
	copy_bin_bytes(cb, content, len);
	if (expired)
		*expired = u->expired;
	sitesync__update_content__free_unpacked(u, NULL);
	return SS_EOK;
}
