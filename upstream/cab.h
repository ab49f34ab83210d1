/*
 * Cabinet (.cab) extraction for vendor catalogs, which are usually
 * published as an MSZIP cabinet with an Authenticode signature appended.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

/*!
 * \brief Extract the catalog from a cabinet: the first file whose name ends
 *        in ".xml", or else the largest file.
 *
 * \param cab_path   Cabinet file; bytes after the cabinet are ignored.
 * \param dest_path  Output: file to create or overwrite with the content.
 * \param max_bytes  Largest extracted size (0 = no limit): the member's
 *                   declared length is checked before anything is written,
 *                   so a small cabinet cannot fill the disk.
 * \param err        Output: message on failure (may be NULL).
 * \param errlen     Size of err.
 *
 * \return SS_EOK; SS_ETOOBIG past max_bytes; SS_ECAB when the file is not a usable cabinet or
 *         decompression fails; -errno when cab_path cannot be opened.
 */
int cab_extract_first(const char *cab_path, const char *dest_path, uint64_t max_bytes,
		      char *err, size_t errlen)
	__attribute__((warn_unused_result));
