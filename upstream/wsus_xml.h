/*
 * The XML side of the WSUS server-to-server protocol [MS-WSUSSS]: a
 * streaming walk over SOAP responses (libxml2 reader, one element's text
 * in memory at a time), the decoding of update blobs (XmlUpdateBlob is
 * escaped XML; XmlUpdateBlobCompressed is base64 of a Cabinet, LZX or
 * MSZIP, whose one member `blob` is UTF-16LE XML) and the mapping of one
 * update document to a catalog entry. No I/O besides the response file;
 * the protocol sequence is in upstream/wsus.c.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "proto/sitesync.pb-c.h"

/* One element's text (a blob) or one decoded document larger than the
 * limit ([upstream] max_document) is refused: a peer must not make us hold
 * more. Real update documents reach ~50 MB uncompressed. 0 = this default. */
#define WSUS_MAX_TEXT (128u * 1024 * 1024)

/* A SOAP fault's detail, as WSUS sends it. */
typedef struct {
	bool present;
	char code[64];        /* detail/ErrorCode, e.g. InvalidCookie */
	char message[256];    /* detail/Message */
} wsus_fault_t;

/*!
 * \brief Called for each element inside soap:Body.
 *
 * \param path  Local names from below soap:Body joined by '/', e.g.
 *              "GetUpdateDataResponse/GetUpdateDataResult/updates/
 *              ServerSyncUpdateData/Id/UpdateID".
 * \param text  NULL when the element starts; at its end its text content
 *              (leaf elements only; "" when empty), NUL-terminated.
 * \return SS_EOK to go on, or an error that stops the walk.
 */
typedef int (*wsus_xml_cb)(void *arg, const char *path, const char *text, size_t len);

/*!
 * \brief Walk a SOAP response in the file \a fd (read from its start).
 *        A soap:Fault is not handed to \a cb: it fills \a fault.
 * \param fault  Output: the fault, if the response is one.
 * \return SS_EOK; SS_EXML for malformed XML, a DOCTYPE or text over
 *         \a max_text; or the callback's error.
 */
int wsus_xml_walk_fd(int fd, size_t max_text, wsus_xml_cb cb, void *arg, wsus_fault_t *fault,
                     char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief wsus_xml_walk_fd() over bytes in memory (tests, fuzzing). */
int wsus_xml_walk_memory(const char *buf, size_t len, size_t max_text, wsus_xml_cb cb,
                         void *arg, wsus_fault_t *fault, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief Decode XmlUpdateBlobCompressed text: base64 → Cabinet → member
 *        `blob` (UTF-16LE, BOM optional) → UTF-8.
 * \param xml  Output: malloc'd NUL-terminated UTF-8 XML; *xml_len its length.
 * \return SS_EOK; SS_ECAB for bad base64, a bad cabinet, no member `blob`
 *         or bad UTF-16; SS_ETOOBIG when the XML would be over \a max_text.
 */
int wsus_blob_decode(const char *b64, size_t len, size_t max_text, char **xml,
                     size_t *xml_len, char *err, size_t errlen)
	__attribute__((warn_unused_result));

typedef struct {
	char id[37];
	uint32_t revision;
} wsus_ident_t;

/* One update document, mapped. Strings are owned by the struct. */
typedef struct {
	Sitesync__UpdateContent u;  /* the catalog entry (products/classification: see below) */
	uint32_t revision;
	char update_type[32];       /* Software, Driver, Category, Detectoid */
	char category_type[32];     /* categories: Company, ProductFamily, Product, UpdateClassification */
	bool is_category;           /* UpdateType Category or Detectoid */
	/* Category prerequisites (AtLeastOne IsCategory="true"); wsus.c
	 * sorts them into products and classification by their kind. */
	char **cat_prereqs;
	size_t n_cat_prereqs;
	/* Prerequisites named directly under Prerequisites: each one is
	 * required (of an AtLeastOne group any one will do). */
	char **req_prereqs;
	size_t n_req_prereqs;
	wsus_ident_t *bundled_ids;  /* with revisions, as the document names them */
	size_t n_bundled_ids;
	/* internal */
	char **owned;
	size_t n_owned, cap_owned;
	Sitesync__UpdateFile **files;
	size_t cap_files;
} wsus_update_t;

/*!
 * \brief Map one update document (UTF-8 XML) to a catalog entry: id
 *        (lower case), revision, title/description in the first of
 *        \a langs present (else the default language, else the first),
 *        KB, MSRC severity, dates as UTC, supersedes, non-category
 *        prerequisites, bundled ids, files with SHA-1/SHA-256 (no URLs:
 *        those come with GetUpdateData), expired for PublicationState
 *        Expired, and the document itself as original_xml.
 * \return SS_EOK; SS_EXML when it is not an update document.
 */
int wsus_update_parse(const char *xml, size_t len, const char *const *langs, size_t nlangs,
                      wsus_update_t *out, char *err, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief Take ownership of \a s (malloc'd) for the update's lifetime. */
char *wsus_update_own(wsus_update_t *w, char *s);

/*! \brief Free what the update owns and zero it (accepts a zeroed one). */
void wsus_update_clear(wsus_update_t *w);

/*! \brief Lower-case a GUID in place; false when it is not one. */
bool wsus_guid_norm(char *id);
