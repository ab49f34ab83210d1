/*
 * Daemon and CLI configuration (INI, DESIGN §9). One table lists every key
 * with its type, default and whether SIGHUP may change it; parsing builds a
 * fresh conf_t, validation checks it, and only then is it swapped in.
 */
#pragma once

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SS_DEFAULT_CONF "/etc/sitesync/sitesync.conf"

/* [source NAME]: a further catalog the top merges into each sync. */
typedef struct {
	char *name;
	char *url;                /* https://, http:// or file:// catalog */
	char *ca;
	char *proxy;
	/* Its own selection: comma-separated ids, trimmed (NULL: the site's,
	 * chosen with `sitesync products select` and the like). */
	char *products;
	char *classifications;
	char *languages;
} conf_source_t;

#define CONF_SOURCE_MAX_IDS 256   /* ids in one [source] selection key */

#define CONF_MAX_SOURCES 16

typedef struct {
	char *site_code;          /* [site] code */
	char *state_dir;          /* [site] state_dir: spool and staged pulls */
	char *db_conninfo;        /* [database] conninfo */
	char *tls_ca;             /* [tls] ca */
	char *tls_cert;           /* [tls] cert */
	char *tls_key;            /* [tls] key */
	char *listen_address;     /* [listen] address, NULL on a leaf */
	int max_pending;          /* [listen] max_pending: connections before Hello, all addresses */
	int max_pending_addr;     /* [listen] max_pending_per_address */
	int handshake_timeout;    /* [listen] handshake_timeout: seconds from accept to Hello */
	char *parent_address;     /* [parent] address, NULL on the top */
	char *parent_mode;        /* [parent] mode: connected | disconnected */
	char *parent_code;        /* [parent] code: the only parent site accepted */
	char *upstream_url;       /* [upstream] url, top site only */
	char *upstream_kind;      /* [upstream] kind: catalog | wsus */
	int upstream_max_document; /* [upstream] max_document: one WSUS update document, bytes */
	char *upstream_ca;        /* [upstream] ca */
	char *upstream_proxy;     /* [upstream] proxy */
	char *upstream_cert;      /* [upstream] cert: our certificate at a sitesync:// upstream */
	char *upstream_key;       /* [upstream] key */
	int upstream_connect_timeout; /* [upstream] connect_timeout seconds */
	int upstream_timeout;     /* [upstream] timeout seconds */
	int max_entry_bytes;      /* [upstream] max_entry_bytes: largest catalog entry */
	int max_removal_percent;  /* [upstream] a sync removing more stops unless confirmed */
	int upstream_max_mib;     /* [upstream] max_catalog_mib: download and cabinet, expanded */
	char *upstream_url_shown; /* upstream_url with credentials redacted (derived, not a key) */
	char *schedule_cron;      /* [schedule] cron */
	bool schedule_utc;        /* [schedule] utc */
	int retry_minutes;        /* [schedule] retry_minutes */
	char *http_listen;        /* [http] listen */
	int http_max_header;      /* [http] max_header_bytes */
	int http_max_body;        /* [http] max_body_bytes */
	int http_timeout;         /* [http] timeout seconds */
	int http_max_conns;       /* [http] max_connections */
	char *control_socket;     /* [control] socket */
	char *sync_log;           /* [log] sync_log */
	char *log_level;          /* [log] level */
	int heartbeat_seconds;    /* [replication] heartbeat_seconds */
	int heartbeat_timeout;    /* [replication] heartbeat_timeout */
	int poll_seconds;         /* [replication] poll_seconds */
	int max_frame;            /* [replication] max_frame bytes */
	int batch_entries;        /* [replication] batch_entries */
	int workers;              /* [replication] workers (database threads) */
	int reconnect_max;        /* [replication] reconnect_max seconds */
	int keep_versions;        /* [replication] keep_versions in change log */
	int max_pulls;            /* [replication] max_concurrent_pulls served at once */
	int spool_max_mb;         /* [replication] spool_max_mb: disk for produced pull streams */
	int rate_limit_kib;       /* [replication] rate_limit_kib: KiB/s per child link, 0 = none */
	int wave_size;            /* [replication] request_wave: children per SyncRequest wave */
	int wave_ms;              /* [replication] request_wave_ms between waves */
	bool apply_receiving;     /* [replication] apply_while_receiving */
	bool serve_producing;     /* [replication] serve_while_producing */
	int stale_seconds;        /* [status] stale_seconds behind the top */
	int cert_warning_days;    /* [status] cert_warning_days before expiry; 0 = off */
	int sync_history_rows;    /* [status] sync_history_rows kept (newest) */
	int refusal_log_seconds;  /* [status] refusal_log_seconds: one line per peer per window */
	int messages_keep;        /* [status] messages_keep: newest history rows kept */
	int relay_messages;       /* [status] relay_messages: error messages a row carries up, and taken per row */
	int messages_days;        /* [status] messages_days: older history rows pruned */
	char *alert_command;      /* [alerts] command */
	char *children;           /* [children] approved = P01,P02 */
	int pending_max;          /* [children] refused sites remembered for child list */
	char *trust_signing_key;  /* [trust] signing_key: Ed25519 private key (top) */
	char *trust_public_key;   /* [trust] public_key: the hierarchy's key */
	char *trust_next_key;     /* [trust] next_public_key: announced for rotation */
	bool trust_allow_unsigned; /* [trust] allow_unsigned: below the top without public_key */
	conf_source_t sources[CONF_MAX_SOURCES]; /* [source NAME] sections, file order */
	size_t n_sources;
} conf_t;

/*!
 * \brief Read and validate a configuration file.
 *
 * \param path  File to read.
 * \param out   Output: new configuration, free with conf_free().
 * \param err   Output: message on failure (static or in errbuf).
 * \return SS_EOK or SS_ECONFIG / negated errno.
 */
int conf_load(const char *path, conf_t **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*!
 * \brief As conf_load(), but a bad value, a syntax error or a failed
 * validation is no failure: what parsed is returned (the file must be
 * readable). For `sitesync reload`, which must reach the daemon to hear
 * why the file is refused.
 */
int conf_load_lenient(const char *path, conf_t **out, char *errbuf, size_t errlen)
	__attribute__((warn_unused_result));

/*! \brief Validate semantic constraints (site code shape, required keys). */
int conf_validate(const conf_t *c, char *errbuf, size_t errlen);

void conf_free(conf_t *c);

/*!
 * \brief On reload: give \a nc the running value (\a old's, copied) of every
 * key the table marks not reloadable.
 * \param n_changed  Output: how many of them differed (they need a restart).
 * \param changed    Output: those keys, "[section] key, ...".
 * \return SS_EOK or SS_ENOMEM.
 */
int conf_keep_fixed(conf_t *nc, const conf_t *old, int *n_changed, char *changed, size_t len)
	__attribute__((warn_unused_result));

/*! \brief True when site code is 3 upper-case letters or digits. */
bool conf_site_code_valid(const char *code);

/*! \brief Print every known key as "section.key" lines (used by tests). */
void conf_print_keys(void);

/*!
 * \brief Largest frame of a pull stream, bundle or sitesync:// upstream
 * read here: [replication] max_frame, or one entry of [upstream]
 * max_entry_bytes alone in its Batch plus the framing around it, whichever
 * is larger. Frames a child sends stay under max_frame.
 */
size_t conf_stream_frame_limit(const conf_t *c);

/*! \brief True when this site has no parent (the top site). */
bool conf_is_top(const conf_t *c);
