/*
 * libFuzzer target: the upstream catalog parser (upstream/catalog.h) on
 * XML held in memory. Every package handed out is packed, as the top site
 * does before storing it.
 */
#include <stdint.h>
#include <stdlib.h>

#include "proto/sitesync.pb-c.h"
#include "common/errcode.h"
#include "upstream/catalog.h"

static int fuzz_catalog_entry(const Sitesync__UpdateContent *u, void *arg)
{
	size_t *n = arg;
	size_t len = sitesync__update_content__get_packed_size(u);
	uint8_t *buf = malloc(len ? len : 1);
	if (buf == NULL)
		abort();
	if (sitesync__update_content__pack(u, buf) != len)
		abort();
	Sitesync__UpdateContent *back = sitesync__update_content__unpack(NULL, len, buf);
	if (back == NULL)
		abort();    /* what the parser produced must pack and unpack */
	sitesync__update_content__free_unpacked(back, NULL);
	free(buf);
	(*n)++;
	return SS_EOK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	catalog_stats_t st;
	char err[256];
	int ret = catalog_parse_memory((const char *)data, size, fuzz_catalog_entry,
	                               &n, &st, err, sizeof(err));
	if (ret == SS_EOK && st.entries != n)
		abort();
	return 0;
}
