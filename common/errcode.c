/* Text for sitesync error codes. */
#include "common/errcode.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ss_strerror(int code)
{
	switch (code) {
	case SS_EOK: return "success";
	case SS_EMALF: return "malformed message";
	case SS_ETOOBIG: return "frame too large";
	case SS_EPROTO: return "unexpected message";
	case SS_EVERSION: return "unsupported protocol version";
	case SS_EDB: return "database error";
	case SS_EDIGEST: return "catalog digest mismatch";
	case SS_ECONFIG: return "invalid configuration";
	case SS_ETLS: return "TLS failure";
	case SS_EDENIED: return "not allowed";
	case SS_EXML: return "malformed catalog";
	case SS_EFETCH: return "upstream download failed";
	case SS_ECAB: return "invalid cabinet file";
	case SS_ESEQ: return "catalog version out of order";
	case SS_ECHECKSUM: return "checksum mismatch";
	case SS_EHIERARCHY: return "belongs to another hierarchy";
	case SS_ENOTTOP: return "only the top site can do this";
	case SS_ESIG: return "signature verification failed";
	case SS_ESTALE: return "no sign of life";
	case SS_ETRUNC: return "stream ended early";
	case SS_ELOCKED: return "another daemon is the active writer";
	case SS_EFILE: return "file cannot be used";
	default:
		if (code < 0 && code > SS_ERROR_BASE)
			return strerror(-code);
		return "unknown error";
	}
}

int ss_errnum(int code)
{
	return code < 0 ? -code : code;
}

void ss_errf(char *err, size_t errlen, const char *fmt, ...)
{
	if (err == NULL || errlen == 0)
		return;
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

void ss_err_default(int ret, char *err, size_t errlen)
{
	if (ret != SS_EOK && err != NULL && errlen > 0 && err[0] == '\0')
		snprintf(err, errlen, "%s", ss_strerror(ret));
}
