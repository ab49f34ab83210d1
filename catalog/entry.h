/*
 * One catalog entry on its way into the `updates` table: decode the
 * relayed UpdateContent bytes, hash them for the digest, and write the
 * queryable columns as a COPY row. Shared by pull apply, bundle import and
 * the top site's upstream sync so every path stores entries identically.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "catalog/digest.h"
#include "storage/copy.h"

/* Column list matching entry_copy_row(), for COPY statements. */
#define ENTRY_COPY_FIELDS 15
#define ENTRY_COPY_COLUMNS \
	"update_id, revision, title, vendor, products, classification, languages, " \
	"severity, kb_article, release_date, expired, source, supersedes, " \
	"entry_hash, content"

/*!
 * \brief Decode \a content, check it belongs to \a id, hash it and append
 * its ENTRY_COPY_FIELDS fields in COPY binary format. The caller writes
 * the row's field count first (copy_bin_row), so it may add columns.
 *
 * \param hash     Output: the entry's digest contribution.
 * \param expired  Output: the entry's expired flag (may be NULL).
 * \return SS_EOK, or SS_EMALF if the content does not decode or names
 *         another update.
 */
int entry_copy_row(copybuf_t *cb, const char *id, uint32_t revision,
                   const uint8_t *content, size_t len,
                   uint8_t hash[SS_DIGEST_LEN], bool *expired)
	__attribute__((warn_unused_result));

/*! \brief True for a canonical lower-case UUID string. */
bool entry_id_valid(const char *id);

struct Sitesync__UpdateContent;

/*!
 * \brief The queryable columns of an entry, title to supersedes (in
 * ENTRY_COPY_COLUMNS order), in COPY binary format; shared by the pull
 * apply and the upstream stage so both store an entry the same way.
 */
void entry_copy_fields(copybuf_t *cb, const struct Sitesync__UpdateContent *u);
/* Position of the expired flag among entry_copy_fields()' fields. */
#define ENTRY_FIELD_EXPIRED 8

/*! \brief The 16 bytes of a canonical id (entry_id_valid), for binary COPY. */
void entry_id_bytes(const char *id, uint8_t out[16]);

/*! \brief The canonical id (entry_id_valid) of 16 bytes, the inverse of
 * entry_id_bytes(). */
void entry_id_format(const uint8_t b[16], char out[37]);
