/* Blocking replication client used for sitesync:// upstreams. */
#include "upstream/remote.h"

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "proto/frame.h"
#include "proto/version.h"
#include "net/conn.h"
#include "common/errcode.h"
#include "net/tls.h"

int remote_is_url(const char *url)
{
	return url && strncmp(url, "sitesync://", 11) == 0;
}

static int remote_dial(const char *hostport, int *out, char *err, size_t errlen)
{
	char host[256], port[16];
	int portnum = 0;
	if (conn_split_hostport(hostport, host, sizeof(host), &portnum) != SS_EOK) {
		snprintf(err, errlen, "upstream '%s' is not sitesync://HOST:PORT", hostport);
		return SS_ECONFIG;
	}
	snprintf(port, sizeof(port), "%d", portnum);
	struct addrinfo hints = { .ai_socktype = SOCK_STREAM }, *res = NULL;
	int gai = getaddrinfo(host, port, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "cannot resolve %s: %s", host, gai_strerror(gai));
		return SS_EFETCH;
	}
	int fd = -1;
	for (struct addrinfo *ai = res; ai && fd < 0; ai = ai->ai_next) {
		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
		if (fd >= 0 && connect(fd, ai->ai_addr, ai->ai_addrlen) != 0) {
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot connect to %s: %s", hostport, strerror(errno));
		return SS_EFETCH;
	}
	*out = fd;
	return SS_EOK;
}

static int remote_send(SSL *ssl, const frame_t *f)
{
	uint8_t *buf = NULL;
	size_t len = 0;
	int ret = frame_encode(f, &buf, &len);
	if (ret != SS_EOK)
		return ret;
	ret = SSL_write(ssl, buf, (int)len) == (int)len ? SS_EOK : SS_EFETCH;
	free(buf);
	return ret;
}

static int remote_ping(SSL *ssl)
{
	Sitesync__Ping ping = SITESYNC__PING__INIT;
	frame_t f = SITESYNC__FRAME__INIT;
	f.msg_case = SITESYNC__FRAME__MSG_PING;
	f.ping = &ping;
	return remote_send(ssl, &f);
}

/* Read exactly n bytes, pinging while the upstream is quiet. */
static int remote_read(SSL *ssl, int fd, uint8_t *buf, size_t n, const remote_opts_t *o,
                       time_t *last_ping, char *err, size_t errlen)
{
	size_t got = 0;
	time_t quiet_since = time(NULL);
	while (got < n) {
		if (SSL_pending(ssl) == 0) {
			struct pollfd p = { .fd = fd, .events = POLLIN };
			int pr = poll(&p, 1, 1000);
			time_t now = time(NULL);
			if (now - *last_ping >= o->heartbeat) {
				if (remote_ping(ssl) != SS_EOK) {
					snprintf(err, errlen, "upstream connection lost");
					return SS_EFETCH;
				}
				*last_ping = now;
			}
			if (pr == 0) {
				if (now - quiet_since > o->timeout) {
					snprintf(err, errlen, "upstream sent nothing for %ld s", o->timeout);
					return SS_ETIMEDOUT;
				}
				continue;
			}
		}
		int r = SSL_read(ssl, buf + got, (int)(n - got));
		if (r <= 0) {
			int e = SSL_get_error(ssl, r);
			if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE)
				continue;
			char tmp[200];
			snprintf(err, errlen, "upstream closed the connection (%s)", tls_last_error(tmp, sizeof(tmp)));
			return SS_ETRUNC;
		}
		got += (size_t)r;
		quiet_since = time(NULL);
	}
	return SS_EOK;
}

int remote_fetch_snapshot(const remote_opts_t *o, const char *dest, uint64_t *version,
                          uint64_t *bytes, char *err, size_t errlen)
{
	SSL_CTX *ctx = NULL;
	SSL *ssl = NULL;
	FILE *out = NULL;
	uint8_t *buf = NULL;
	frame_t *f = NULL;
	int fd = -1;
	char site[4];
	*bytes = 0;
	int ret = tls_cert_site(o->cert_file, site, err, errlen);
	if (ret != SS_EOK)
		return ret;
	if ((ret = tls_ctx_new(o->ca_file, o->cert_file, o->key_file, 0, &ctx, err, errlen)) != SS_EOK)
		return ret;
	if ((ret = remote_dial(o->url + 11, &fd, err, errlen)) != SS_EOK)
		goto out;
	ssl = SSL_new(ctx);
	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_connect(ssl) != 1) {
		char tmp[200];
		snprintf(err, errlen, "TLS with upstream %s failed: %s", o->url, tls_last_error(tmp, sizeof(tmp)));
		ret = SS_ETLS;
		goto out;
	}
	/* Another hierarchy: no hierarchy id, we hold nothing, want everything. */
	Sitesync__Hello h = SITESYNC__HELLO__INIT;
	h.protocol_version = SS_PROTO_VERSION;
	h.site = site;
	h.software_version = SS_SOFTWARE_VERSION;
	frame_t hf = SITESYNC__FRAME__INIT;
	hf.msg_case = SITESYNC__FRAME__MSG_HELLO;
	hf.hello = &h;
	Sitesync__PullRequest pr = SITESYNC__PULL_REQUEST__INIT;
	pr.full = true;
	frame_t pf = SITESYNC__FRAME__INIT;
	pf.msg_case = SITESYNC__FRAME__MSG_PULL_REQUEST;
	pf.pull_request = &pr;
	if ((ret = remote_send(ssl, &hf)) != SS_EOK) {
		snprintf(err, errlen, "cannot send Hello to %s", o->url);
		goto out;
	}
	out = fopen(dest, "wb");
	if (out == NULL) {
		ret = -errno;
		snprintf(err, errlen, "cannot write %s: %s", dest, strerror(errno));
		goto out;
	}
	time_t last_ping = time(NULL);
	bool hello = false;
	for (;;) {
		uint8_t hdr[SS_FRAME_HDR];
		uint32_t body = 0;
		if ((ret = remote_read(ssl, fd, hdr, sizeof(hdr), o, &last_ping, err, errlen)) != SS_EOK)
			goto out;
		if ((ret = frame_header_parse(hdr, sizeof(hdr), o->max_frame, &body)) != SS_EOK) {
			snprintf(err, errlen, "bad frame from upstream: %s", ss_strerror(ret));
			goto out;
		}
		uint8_t *nb = realloc(buf, SS_FRAME_HDR + (size_t)body);
		if (nb == NULL) {
			ret = SS_ENOMEM;
			goto out;
		}
		buf = nb;
		memcpy(buf, hdr, sizeof(hdr));
		if ((ret = remote_read(ssl, fd, buf + SS_FRAME_HDR, body, o, &last_ping, err, errlen)) != SS_EOK)
			goto out;
		frame_free(f);
		f = NULL;
		if ((ret = frame_decode(buf + SS_FRAME_HDR, body, &f)) != SS_EOK) {
			snprintf(err, errlen, "undecodable frame from upstream");
			goto out;
		}
		switch (f->msg_case) {
		case SITESYNC__FRAME__MSG_HELLO:
			if (hello || f->hello->protocol_version < SS_PROTO_MIN_VERSION ||
			    f->hello->protocol_version > SS_PROTO_VERSION) {
				snprintf(err, errlen, "unexpected Hello (protocol %u) from upstream",
				         f->hello->protocol_version);
				ret = SS_EPROTO;
				goto out;
			}
			hello = true;
			if ((ret = remote_send(ssl, &pf)) != SS_EOK)
				goto out;
			break;
		case SITESYNC__FRAME__MSG_ERROR:
			snprintf(err, errlen, "upstream %s refused: %s", o->url, f->error->message);
			ret = SS_EDENIED;
			goto out;
		case SITESYNC__FRAME__MSG_PULL_START:
		case SITESYNC__FRAME__MSG_BATCH:
		case SITESYNC__FRAME__MSG_PULL_DONE:
			if (fwrite(buf, 1, SS_FRAME_HDR + (size_t)body, out) != SS_FRAME_HDR + (size_t)body) {
				ret = SS_EIO;
				snprintf(err, errlen, "cannot write %s", dest);
				goto out;
			}
			*bytes += SS_FRAME_HDR + (size_t)body;
			if (f->msg_case == SITESYNC__FRAME__MSG_PULL_DONE) {
				*version = f->pull_done->version;
				ret = fclose(out) == 0 ? SS_EOK : SS_EIO;
				out = NULL;
				goto out;
			}
			break;
		default:
			break;      /* Pong, SyncRequest: nothing to do here */
		}
	}
out:
	frame_free(f);
	free(buf);
	if (out)
		fclose(out);
	if (ssl) {
		SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	if (fd >= 0)
		close(fd);
	SSL_CTX_free(ctx);
	ERR_clear_error();
	return ret;
}
