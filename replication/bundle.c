/*
 * Export and import bundles: the pull stream wrapped in a header and a
 * checksum, so a site without a network path to its parent can be fed by
 * carrying a file (DESIGN §6). The loop-side commands live in
 * server/ctl_bundle.c; this file only does file and database work.
 */
#include "replication/bundle.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "proto/frame.h"
#include "proto/version.h"
#include "catalog/stream.h"
#include "common/errcode.h"

#define BUNDLE_CHUNK (256u * 1024u)
/* Header and BundleEnd are a few hundred bytes; anything far larger is not one. */
#define BUNDLE_SMALL_FRAME (64u * 1024u)

/* A FILE that hashes whatever passes through it on its way to another. */
typedef struct {
	FILE *to;
	EVP_MD_CTX *md;
	uint64_t bytes;
} hash_sink_t;

static ssize_t hash_sink_write(void *cookie, const char *buf, size_t n);
static int fsync_dir_of(const char *path);

static ssize_t hash_sink_write(void *cookie, const char *buf, size_t n)
{
	hash_sink_t *h = cookie;
	if (fwrite(buf, 1, n, h->to) != n || EVP_DigestUpdate(h->md, buf, n) != 1)
		return -1;
	h->bytes += n;
	return (ssize_t)n;
}

/* The rename is durable only once the directory entry is. */
static int fsync_dir_of(const char *path)
{
	char copy[PATH_MAX];
	snprintf(copy, sizeof(copy), "%s", path);
	int fd = open(dirname(copy), O_RDONLY | O_DIRECTORY);
	if (fd < 0)
		return -errno;
	int ret = fsync(fd) == 0 ? SS_EOK : -errno;
	close(fd);
	return ret;
}

int bundle_export(PGconn *conn, bundle_export_t *e)
{
	char tmp[PATH_MAX];
	FILE *raw = NULL, *out = NULL, *hf = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t *chunk = NULL;
	bool tmp_made = false;
	int ret, fd;

	e->err[0] = '\0';
	e->bytes = 0;

	/* The header needs to/digest, known only once the stream is written. */
	char rawpath[PATH_MAX];
	snprintf(rawpath, sizeof(rawpath), "%s/export-XXXXXX", e->scratch_dir);
	fd = mkstemp(rawpath);
	if (fd < 0) {
		ret = -errno;
		snprintf(e->err, sizeof(e->err), "cannot create a scratch file in %s: %s",
		         e->scratch_dir, strerror(errno));
		goto fail;
	}
	/* Unlinked at once: nothing is left behind whatever happens next. */
	unlink(rawpath);
	raw = fdopen(fd, "w+b");
	if (raw == NULL) {
		ret = -errno;
		close(fd);
		snprintf(e->err, sizeof(e->err), "cannot open a scratch file: %s", strerror(errno));
		goto fail;
	}

	stream_produce_t p;
	memset(&p, 0, sizeof(p));
	p.have = e->since;
	p.want_full = e->since == 0;
	p.batch_entries = e->batch_entries;
	p.batch_bytes = e->batch_bytes;
	/* As a pull would: at the top, the manifest is signed here, so sites
	 * with [trust] public_key accept the bundle. */
	p.keys = e->keys;
	p.site = e->source_site;
	ret = stream_produce(conn, &p, raw);
	if (ret != SS_EOK) {
		snprintf(e->err, sizeof(e->err), "reading the catalog: %s", p.err);
		goto fail;
	}
	if (p.to == 0) {
		snprintf(e->err, sizeof(e->err), "this site holds no catalog yet: nothing to export");
		ret = SS_ENOENT;
		goto fail;
	}
	if (e->since > p.to) {
		snprintf(e->err, sizeof(e->err), "--since %" PRIu64 " is newer than this site's catalog "
		         "(version %" PRIu64 ")", e->since, p.to);
		ret = SS_EINVAL;
		goto fail;
	}
	e->from = p.from;
	e->to = p.to;
	e->full = p.full;
	e->fell_back = e->since > 0 && p.full;
	e->upserts = p.upserts;
	e->deletes = p.deletes;
	e->entries = p.entries;
	e->digest = p.digest;
	if (fflush(raw) != 0 || fseek(raw, 0, SEEK_SET) != 0) {
		ret = SS_EIO;
		snprintf(e->err, sizeof(e->err), "scratch file: %s", strerror(errno));
		goto fail;
	}

	snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", e->out);
	fd = mkstemp(tmp);
	if (fd < 0) {
		ret = -errno;
		snprintf(e->err, sizeof(e->err), "cannot write beside %s: %s", e->out, strerror(errno));
		goto fail;
	}
	tmp_made = true;
	fchmod(fd, 0644);
	out = fdopen(fd, "wb");
	if (out == NULL) {
		ret = -errno;
		close(fd);
		snprintf(e->err, sizeof(e->err), "cannot write %s: %s", tmp, strerror(errno));
		goto fail;
	}
	md = EVP_MD_CTX_new();
	if (md == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		ret = SS_ENOMEM;
		goto fail;
	}
	hash_sink_t sink = { .to = out, .md = md, .bytes = 0 };
	cookie_io_functions_t io = { .write = hash_sink_write };
	hf = fopencookie(&sink, "wb", io);
	chunk = malloc(BUNDLE_CHUNK);
	if (hf == NULL || chunk == NULL) {
		ret = SS_ENOMEM;
		goto fail;
	}

	Sitesync__BundleHeader bh = SITESYNC__BUNDLE_HEADER__INIT;
	bh.format_version = SS_BUNDLE_FORMAT;
	bh.source_site = (char *)e->source_site;
	bh.hierarchy_id.data = e->hierarchy_id;
	bh.hierarchy_id.len = SS_BUNDLE_ID_LEN;
	bh.from_version = e->from;
	bh.to_version = e->to;
	bh.digest.data = e->digest.b;
	bh.digest.len = SS_DIGEST_LEN;
	bh.upserts = e->upserts;
	bh.deletes = e->deletes;
	bh.created_at = (int64_t)time(NULL);
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_BUNDLE_HEADER;
	f.bundle_header = &bh;
	if ((ret = stream_write_frame(hf, &f, NULL)) != SS_EOK)
		goto write_fail;

	size_t n;
	while ((n = fread(chunk, 1, BUNDLE_CHUNK, raw)) > 0) {
		if (fwrite(chunk, 1, n, hf) != n) {
			ret = SS_EIO;
			goto write_fail;
		}
	}
	if (ferror(raw)) {
		ret = SS_EIO;
		snprintf(e->err, sizeof(e->err), "reading the scratch stream: %s", strerror(errno));
		goto fail;
	}
	int closed = fclose(hf);
	hf = NULL;
	if (closed != 0) {
		ret = SS_EIO;
		goto write_fail;
	}

	uint8_t sum[EVP_MAX_MD_SIZE];
	unsigned sumlen = 0;
	if (EVP_DigestFinal_ex(md, sum, &sumlen) != 1) {
		ret = SS_ENOMEM;
		goto fail;
	}
	Sitesync__BundleEnd be = SITESYNC__BUNDLE_END__INIT;
	be.checksum.data = sum;
	be.checksum.len = sumlen;
	f.msg_case = SITESYNC__FRAME__MSG_BUNDLE_END;
	f.bundle_end = &be;
	e->bytes = sink.bytes;
	if ((ret = stream_write_frame(out, &f, &e->bytes)) != SS_EOK)
		goto write_fail;
	if (fflush(out) != 0 || fsync(fileno(out)) != 0) {
		ret = SS_EIO;
		goto write_fail;
	}
	closed = fclose(out);
	out = NULL;
	if (closed != 0) {
		ret = SS_EIO;
		goto write_fail;
	}
	if (rename(tmp, e->out) != 0) {
		ret = -errno;
		snprintf(e->err, sizeof(e->err), "cannot rename %s to %s: %s", tmp, e->out,
		         strerror(errno));
		goto fail;
	}
	tmp_made = false;
	if ((ret = fsync_dir_of(e->out)) != SS_EOK) {
		snprintf(e->err, sizeof(e->err), "cannot sync the directory of %s: %s", e->out,
		         ss_strerror(ret));
		goto fail;
	}
	ret = SS_EOK;
	goto out;

write_fail:
	snprintf(e->err, sizeof(e->err), "cannot write %s: %s", tmp,
	         errno ? strerror(errno) : ss_strerror(ret));
fail:
	if (e->err[0] == '\0')
		snprintf(e->err, sizeof(e->err), "%s", ss_strerror(ret));
out:
	if (hf)
		fclose(hf);
	if (out)
		fclose(out);
	if (tmp_made)
		unlink(tmp);
	if (raw)
		fclose(raw);
	EVP_MD_CTX_free(md);
	free(chunk);
	return ret;
}

static uint32_t be32_read(const uint8_t b[4])
{
	return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

/* Header fields, once the checksum has vouched for the bytes. */
static int header_check(const frame_t *first, bundle_info_t *info, char *err, size_t errlen)
{
	if (first == NULL || first->msg_case != SITESYNC__FRAME__MSG_BUNDLE_HEADER) {
		snprintf(err, errlen, "not a sitesync bundle: it does not start with a bundle header");
		return SS_EMALF;
	}
	const Sitesync__BundleHeader *h = first->bundle_header;
	if (h->format_version != SS_BUNDLE_FORMAT) {
		snprintf(err, errlen, "bundle format %u is not understood by this sitesync "
		         "(format %d)", h->format_version, SS_BUNDLE_FORMAT);
		return SS_EVERSION;
	}
	if (h->hierarchy_id.len != SS_BUNDLE_ID_LEN || h->digest.len != SS_DIGEST_LEN) {
		snprintf(err, errlen, "bundle header is malformed");
		return SS_EMALF;
	}
	info->format_version = h->format_version;
	snprintf(info->source_site, sizeof(info->source_site), "%s",
	         h->source_site ? h->source_site : "");
	memcpy(info->hierarchy_id, h->hierarchy_id.data, SS_BUNDLE_ID_LEN);
	memcpy(info->digest.b, h->digest.data, SS_DIGEST_LEN);
	info->from = h->from_version;
	info->to = h->to_version;
	info->upserts = h->upserts;
	info->deletes = h->deletes;
	info->created_at = h->created_at;
	return SS_EOK;
}

int bundle_verify(const char *path, size_t limit, bundle_info_t *info, char *err,
                  size_t errlen)
{
	FILE *f = NULL;
	EVP_MD_CTX *md = NULL;
	uint8_t *chunk = NULL;
	uint8_t *small = NULL;
	frame_t *first = NULL, *last = NULL;
	struct stat st;
	int ret;

	memset(info, 0, sizeof(*info));
	err[0] = '\0';
	f = fopen(path, "rb");
	if (f == NULL) {
		ret = -errno;
		snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
		goto out;
	}
	if (fstat(fileno(f), &st) != 0 || !S_ISREG(st.st_mode)) {
		ret = SS_EINVAL;
		snprintf(err, errlen, "not a regular file");
		goto out;
	}
	uint64_t size = (uint64_t)st.st_size;
	info->bytes = size;
	md = EVP_MD_CTX_new();
	chunk = malloc(BUNDLE_CHUNK);
	if (md == NULL || chunk == NULL || EVP_DigestInit_ex(md, EVP_sha256(), NULL) != 1) {
		ret = SS_ENOMEM;
		goto out;
	}

	/*
	 * Walk the frames by their headers only: the checksum must be judged
	 * before any content is trusted, and bodies are hashed in chunks so
	 * memory stays constant. The frame that ends exactly at end of file
	 * is the BundleEnd; everything before it is covered by its checksum.
	 */
	uint64_t off = 0;
	for (unsigned nframe = 0;; nframe++) {
		uint8_t hdr[SS_FRAME_HDR];
		if (off == size || size - off < SS_FRAME_HDR) {
			ret = SS_ETRUNC;
			snprintf(err, errlen, "truncated bundle: the file ends %s",
			         off == size ? "without its checksum" : "inside a frame");
			goto out;
		}
		if (fread(hdr, 1, sizeof(hdr), f) != sizeof(hdr)) {
			ret = SS_EIO;
			snprintf(err, errlen, "reading the bundle: %s", strerror(errno));
			goto out;
		}
		uint32_t blen = be32_read(hdr);
		if (blen == 0 || blen > limit) {
			if (nframe == 0) {
				ret = SS_EMALF;
				snprintf(err, errlen, "not a sitesync bundle");
			} else {
				ret = SS_ECHECKSUM;
				snprintf(err, errlen, "checksum mismatch: the file is corrupted (the frame at "
				         "byte %" PRIu64 " claims %" PRIu32 " bytes)", off, blen);
			}
			goto out;
		}
		uint64_t end = off + SS_FRAME_HDR + blen;
		if (end > size) {
			ret = SS_ETRUNC;
			snprintf(err, errlen, "truncated bundle: the file ends inside a frame "
			         "(%" PRIu64 " of %" PRIu64 " bytes present)", size, end);
			goto out;
		}
		bool is_last = end == size;
		if ((nframe == 0 || is_last) && blen <= BUNDLE_SMALL_FRAME) {
			small = malloc(blen);
			if (small == NULL) {
				ret = SS_ENOMEM;
				goto out;
			}
			if (fread(small, 1, blen, f) != blen) {
				ret = SS_EIO;
				snprintf(err, errlen, "reading the bundle: %s", strerror(errno));
				goto out;
			}
			frame_t *fr = NULL;
			if (frame_decode(small, blen, &fr) != SS_EOK)
				fr = NULL;
			if (is_last && fr && fr->msg_case == SITESYNC__FRAME__MSG_BUNDLE_END) {
				last = fr;
				break;
			}
			if (nframe == 0)
				first = fr;
			else
				frame_free(fr);
			if (EVP_DigestUpdate(md, hdr, sizeof(hdr)) != 1 ||
			    EVP_DigestUpdate(md, small, blen) != 1) {
				ret = SS_ENOMEM;
				goto out;
			}
			free(small);
			small = NULL;
		} else {
			if (nframe == 0) {
				ret = SS_EMALF;
				snprintf(err, errlen, "not a sitesync bundle");
				goto out;
			}
			if (EVP_DigestUpdate(md, hdr, sizeof(hdr)) != 1) {
				ret = SS_ENOMEM;
				goto out;
			}
			for (uint32_t left = blen; left > 0;) {
				size_t want = left < BUNDLE_CHUNK ? left : BUNDLE_CHUNK;
				if (fread(chunk, 1, want, f) != want) {
					ret = SS_EIO;
					snprintf(err, errlen, "reading the bundle: %s", strerror(errno));
					goto out;
				}
				if (EVP_DigestUpdate(md, chunk, want) != 1) {
					ret = SS_ENOMEM;
					goto out;
				}
				left -= (uint32_t)want;
			}
		}
		if (is_last) {
			ret = SS_ETRUNC;
			snprintf(err, errlen, "truncated bundle: it does not end with its checksum");
			goto out;
		}
		off = end;
	}

	uint8_t sum[EVP_MAX_MD_SIZE];
	unsigned sumlen = 0;
	if (EVP_DigestFinal_ex(md, sum, &sumlen) != 1) {
		ret = SS_ENOMEM;
		goto out;
	}
	if (last->bundle_end->checksum.len != sumlen ||
	    memcmp(last->bundle_end->checksum.data, sum, sumlen) != 0) {
		ret = SS_ECHECKSUM;
		snprintf(err, errlen, "checksum mismatch: the file is corrupted");
		goto out;
	}
	ret = header_check(first, info, err, errlen);
out:
	frame_free(first);
	frame_free(last);
	free(small);
	free(chunk);
	EVP_MD_CTX_free(md);
	if (f)
		fclose(f);
	return ret;
}

/* apply_stream() speaks to developers; the operator wants the situation. */
static void import_explain(bundle_import_t *im, int ret)
{
	const apply_t *a = &im->apply;
	switch (ret) {
	case SS_ESEQ:
		if (a->to == a->held)
			snprintf(im->err, sizeof(im->err), "bundle was already applied: this site holds "
			         "version %" PRIu64, a->held);
		else if (a->to < a->held)
			snprintf(im->err, sizeof(im->err), "bundle is older than this site's catalog: it "
			         "brings version %" PRIu64 ", this site holds %" PRIu64, a->to, a->held);
		else
			snprintf(im->err, sizeof(im->err), "bundle starts at version %" PRIu64 " but this "
			         "site holds %" PRIu64 "; export with --since %" PRIu64 " or a full bundle",
			         a->from, a->held, a->held);
		break;
	case SS_ETRUNC:
		snprintf(im->err, sizeof(im->err), "truncated bundle: %s", a->err);
		break;
	case SS_EDIGEST:
		snprintf(im->err, sizeof(im->err), "catalog digest mismatch: this site's rows at "
		         "version %" PRIu64 " differ from %s's, nothing was changed; import a full "
		         "bundle to repair (%s)", a->held, im->info.source_site, a->err);
		break;
	default:
		snprintf(im->err, sizeof(im->err), "%s", a->err[0] ? a->err : ss_strerror(ret));
		break;
	}
}

int bundle_import(PGconn *conn, bundle_import_t *im)
{
	im->err[0] = '\0';
	/*
	 * Verify and apply the same inode: a file renamed over the path after
	 * its checksum was judged must not be what gets applied.
	 */
	int fd = open(im->path, O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		int ret = -errno;
		snprintf(im->err, sizeof(im->err), "cannot open %s: %s", im->path, strerror(errno));
		return ret;
	}
	char same[64];
	snprintf(same, sizeof(same), "/proc/self/fd/%d", fd);
	int ret = bundle_verify(same, im->limit, &im->info, im->err, sizeof(im->err));
	if (ret != SS_EOK)
		goto out;
	if (memcmp(im->info.hierarchy_id, im->hierarchy_id, SS_BUNDLE_ID_LEN) != 0) {
		snprintf(im->err, sizeof(im->err), "bundle belongs to another hierarchy: %s exported "
		         "it under a different CA certificate", im->info.source_site);
		ret = SS_EHIERARCHY;
		goto out;
	}
	apply_t *a = &im->apply;
	a->path = same;
	a->limit = im->limit;
	a->keep_versions = im->keep_versions;
	a->bundle = true;
	a->allow_same = false;
	a->keys = im->keys;
	ret = apply_stream(conn, a);
	a->path = im->path;        /* `same` goes out of scope */
	if (ret != SS_EOK)
		import_explain(im, ret);
out:
	close(fd);
	return ret;
}
