/*
 * Cabinet extraction with libmspack. Vendors ship their catalog as a
 * one-file MSZIP cabinet (DellSDPCatalogPC.cab, HpCatalogForSms.latest.cab)
 * signed with Authenticode, so the signature bytes trail the cabinet;
 * libmspack reads the cabinet's own length from its header and never looks
 * past it, which is what lets those files through.
 */
#include "upstream/cab.h"

#include <inttypes.h>
#include <mspack.h>
#include <stdbool.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "common/errcode.h"

static const char *cab_mspack_strerror(int e);
static bool cab_is_xml(const char *name);

static const char *cab_mspack_strerror(int e)
{
	switch (e) {
	case MSPACK_ERR_OK: return "no error";
	case MSPACK_ERR_ARGS: return "bad arguments";
	case MSPACK_ERR_OPEN: return "cannot open file";
	case MSPACK_ERR_READ: return "read error";
	case MSPACK_ERR_WRITE: return "write error";
	case MSPACK_ERR_SEEK: return "seek error";
	case MSPACK_ERR_NOMEMORY: return "out of memory";
	case MSPACK_ERR_SIGNATURE: return "not a cabinet (bad signature)";
	case MSPACK_ERR_DATAFORMAT: return "bad cabinet data format";
	case MSPACK_ERR_CHECKSUM: return "checksum error";
	case MSPACK_ERR_CRUNCH: return "compression error";
	case MSPACK_ERR_DECRUNCH: return "decompression error";
	default: return "unknown libmspack error";
	}
}

static bool cab_is_xml(const char *name)
{
	size_t n = strlen(name);
	return n >= 4 && strcasecmp(name + n - 4, ".xml") == 0;
}

int cab_extract_first(const char *cab_path, const char *dest_path, uint64_t max_bytes,
		      char *err, size_t errlen)
{
	int ret = SS_EOK;
	struct mscab_decompressor *d = NULL;
	struct mscabd_cabinet *cab = NULL;
	struct stat st;

	/* libmspack folds every open failure into MSPACK_ERR_OPEN; look first
	 * so a missing file reports -ENOENT rather than "bad cabinet". */
	if (stat(cab_path, &st) != 0) {
		ret = -errno;
		ss_errf(err, errlen, "%s: %s", cab_path, strerror(errno));
		goto fail;
	}

	d = mspack_create_cab_decompressor(NULL);
	if (d == NULL) {
		ret = SS_ENOMEM;
		ss_errf(err, errlen, "%s: cannot create cab decompressor",
			cab_path);
		goto fail;
	}
	/* Catalogs are small; checksums guard against truncated downloads. */
	d->set_param(d, MSCABD_PARAM_FIXMSZIP, 0);

	cab = d->open(d, cab_path);
	if (cab == NULL) {
		ret = SS_ECAB;
		ss_errf(err, errlen, "%s: %s", cab_path,
			cab_mspack_strerror(d->last_error(d)));
		goto fail;
	}

	struct mscabd_file *pick = NULL;
	for (struct mscabd_file *f = cab->files; f != NULL; f = f->next) {
		if (cab_is_xml(f->filename)) {
			pick = f;
			break;
		}
		if (pick == NULL || f->length > pick->length)
			pick = f;
	}
	if (pick == NULL) {
		ret = SS_ECAB;
		ss_errf(err, errlen, "%s: cabinet holds no file", cab_path);
		goto fail;
	}

	/* libmspack writes exactly the member's declared length (or fails):
	 * checking it bounds what extraction can put on the disk. */
	if (max_bytes && (uint64_t)pick->length > max_bytes) {
		ret = SS_ETOOBIG;
		ss_errf(err, errlen, "%s: %s would extract to %u bytes, more than %" PRIu64
			" ([upstream] max_catalog_mib)", cab_path, pick->filename,
			pick->length, max_bytes);
		goto fail;
	}

	int e = d->extract(d, pick, dest_path);
	if (e != MSPACK_ERR_OK) {
		ret = SS_ECAB;
		ss_errf(err, errlen, "%s: extracting %s: %s", cab_path,
			pick->filename, cab_mspack_strerror(e));
		remove(dest_path);
		goto fail;
	}

fail:
	if (cab != NULL)
		d->close(d, cab);
	if (d != NULL)
		mspack_destroy_cab_decompressor(d);
	return ret;
}
