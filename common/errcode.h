/*
 * Error codes shared by every module: 0 is success, errno values are
 * passed through negated, project codes live below -500.
 */
#pragma once

#include <errno.h>
#include <stddef.h>

enum {
	SS_EOK = 0,
	SS_ENOMEM = -ENOMEM,
	SS_EINVAL = -EINVAL,
	SS_EIO = -EIO,
	SS_ENOENT = -ENOENT,
	SS_EAGAIN = -EAGAIN,
	SS_EEXIST = -EEXIST,
	SS_EBUSY = -EBUSY,
	SS_ETIMEDOUT = -ETIMEDOUT,
	SS_ECONNREFUSED = -ECONNREFUSED,

	SS_ERROR_BASE = -500,
	SS_EMALF = -501,        /* malformed frame or message */
	SS_ETOOBIG = -502,      /* frame over the size limit */
	SS_EPROTO = -503,       /* message not valid in this state */
	SS_EVERSION = -504,     /* protocol version not served */
	SS_EDB = -505,          /* database error */
	SS_EDIGEST = -506,      /* catalog digest mismatch */
	SS_ECONFIG = -507,      /* bad configuration */
	SS_ETLS = -508,         /* TLS setup or handshake failure */
	SS_EDENIED = -509,      /* site not approved / not allowed */
	SS_EXML = -510,         /* malformed catalog */
	SS_EFETCH = -511,       /* upstream download failed */
	SS_ECAB = -512,         /* bad cabinet file */
	SS_ESEQ = -513,         /* version out of order */
	SS_ECHECKSUM = -514,    /* bundle checksum mismatch */
	SS_EHIERARCHY = -515,   /* bundle or peer from another hierarchy */
	SS_ENOTTOP = -516,      /* only the top site can do this */
	SS_ESIG = -517,         /* signature verification failed */
	SS_ESTALE = -518,       /* link or site went silent */
	SS_ETRUNC = -519,       /* stream ended early */
	SS_ELOCKED = -520,      /* another daemon holds the writer lock */
	SS_EFILE = -521,        /* a file named by the operator cannot be used */
	SS_ERROR_MIN = -521,
};

/*!
 * \brief Human-readable text for an SS_E* code (or negated errno).
 */
const char *ss_strerror(int code);

/*!
 * \brief Stable positive number for an error code, as shown to operators
 *        (last_error_code): project codes map to 500+, errno to itself.
 */
int ss_errnum(int code);

/*!
 * \brief Format a message into \a err (cut to \a errlen); does nothing when
 * \a err is NULL or \a errlen is 0.
 */
void ss_errf(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/*!
 * \brief When \a ret is an error and \a err is still empty, fill it with
 * ss_strerror(ret): a more specific message written earlier wins.
 */
void ss_err_default(int ret, char *err, size_t errlen);
