/*
 * Streaming parser for third-party software update catalogs (the
 * SystemsManagementCatalog / SoftwareDistributionPackage format used by
 * WSUS and Configuration Manager, DESIGN §2). It turns each package into
 * a Sitesync__UpdateContent and hands it to a callback, holding at most
 * one package in memory so catalogs of any size can be parsed.
 */
#pragma once

#include <stddef.h>
#include <stdint.h>

#include "proto/sitesync.pb-c.h"

/*!
 * \brief Called once per package, in document order.
 *
 * \param u    The package; it and all its strings are owned by the parser
 *             and valid only during the call (copy or pack what you keep).
 * \param arg  The caller's pointer given to catalog_parse_*().
 *
 * \return SS_EOK to go on, or an error code that stops parsing and is
 *         returned by catalog_parse_*().
 */
typedef int (*catalog_entry_cb)(const Sitesync__UpdateContent *u, void *arg);

typedef struct {
	uint64_t entries;  /* packages handed to the callback */
	uint64_t bytes;    /* size of the catalog XML parsed */
} catalog_stats_t;

/*
 * Packages are delivered as they are read, so an error late in a catalog
 * comes after earlier packages were handed out: on any error the caller
 * must drop what it collected (a catalog is taken whole or not at all).
 */

/*!
 * \brief Parse a catalog file: plain XML (any encoding libxml2 detects,
 *        with or without BOM), a single-package .sdp file, or a cabinet
 *        holding the catalog (extracted to a temporary file first).
 *
 * \param path    Catalog file.
 * \param cb      Called for each package.
 * \param arg     Passed to cb.
 * \param stats   Output: counts (may be NULL).
 * \param err     Output: message on failure, e.g. "catalog.xml:12: ..."
 *                (may be NULL).
 * \param errlen  Size of err.
 *
 * \return SS_EOK; SS_EXML for malformed or refused XML (entity
 *         declarations), SS_ECAB for a bad cabinet, -errno for I/O errors,
 *         or the callback's error.
 */
int catalog_parse_file(const char *path, catalog_entry_cb cb, void *arg,
		       catalog_stats_t *stats, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief catalog_parse_file() with a bound on what a cabinet may expand
 * to (\a max_bytes, 0 = none): SS_ETOOBIG before anything is extracted.
 * What the daemon uses ([upstream] max_catalog_bytes).
 */
int catalog_parse_file_max(const char *path, uint64_t max_bytes, catalog_entry_cb cb,
			   void *arg, catalog_stats_t *stats, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Parse catalog XML held in memory (not a cabinet); same rules and
 *        results as catalog_parse_file().
 *
 * \param buf     XML bytes.
 * \param len     Length of buf.
 * \param cb      Called for each package.
 * \param arg     Passed to cb.
 * \param stats   Output: counts (may be NULL).
 * \param err     Output: message on failure (may be NULL).
 * \param errlen  Size of err.
 *
 * \return SS_EOK, SS_EXML, or the callback's error.
 */
int catalog_parse_memory(const char *buf, size_t len, catalog_entry_cb cb,
			 void *arg, catalog_stats_t *stats, char *err,
			 size_t errlen)
	__attribute__((warn_unused_result));
