/*
 * libFuzzer target: the WSUS SOAP response walk (upstream/wsus_xml.h) and
 * the mapping of every uncompressed update document it carries, as the
 * top site does with a GetUpdateData answer. Every entry mapped must pack
 * and unpack.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto/sitesync.pb-c.h"
#include "common/errcode.h"
#include "upstream/wsus_xml.h"

static int fuzz_soap_cb(void *arg, const char *path, const char *text, size_t len)
{
	size_t *n = arg;
	if (text == NULL)
		return SS_EOK;
	if (strlen(text) != len)
		abort();    /* the walk hands out exactly the text it read */
	size_t pl = strlen(path);
	if (pl < 13 || strcmp(path + pl - 13, "XmlUpdateBlob") != 0)
		return SS_EOK;
	static const char *const langs[] = { "en" };
	wsus_update_t u;
	char err[256];
	if (wsus_update_parse(text, len, langs, 1, &u, err, sizeof(err)) != SS_EOK)
		return SS_EOK;
	size_t plen = sitesync__update_content__get_packed_size(&u.u);
	uint8_t *buf = malloc(plen ? plen : 1);
	if (buf == NULL)
		abort();
	sitesync__update_content__pack(&u.u, buf);
	Sitesync__UpdateContent *back = sitesync__update_content__unpack(NULL, plen, buf);
	if (back == NULL)
		abort();
	sitesync__update_content__free_unpacked(back, NULL);
	free(buf);
	wsus_update_clear(&u);
	(*n)++;
	return SS_EOK;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t n = 0;
	wsus_fault_t fault;
	char err[256];
	(void)wsus_xml_walk_memory((const char *)data, size, 0, fuzz_soap_cb, &n, &fault,
	                           err, sizeof(err));
	return 0;
}
