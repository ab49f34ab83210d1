#!/usr/bin/env python3
"""Local HTTP(S) server for test_fetch.c (python3 standard library only).

Serves files from --dir on 127.0.0.1 with ephemeral ports and prints
"<http_port> <https_port>" (https_port is 0 without --cert) on one line.
Exits when its stdin closes, so a crashed test never leaves it behind.

  GET /<file>           200 with ETag and Last-Modified; 304 when
                        If-None-Match matches the ETag
  GET /missing          404 (any file that does not exist)
  GET /flaky/<file>     500 on the first request for that path, then as
                        /<file>
  GET /redirect/<file>  302 to /<file>
  GET /downgrade/<file> 302 to http://127.0.0.1:<http_port>/<file> (from https)
  GET /gzip/<n>         n zero bytes sent gzip-compressed (Content-Encoding)
  GET http://any/<file> as a forward proxy: serves /<file>
"""
import argparse
import email.utils
import gzip
import hashlib
import os
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT = "."
HTTP_PORT = 0
FLAKY_SEEN = set()
LOCK = threading.Lock()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt, *args):
        pass

    def send_plain(self, code, text):
        body = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?", 1)[0]
        if "://" in path:
            # Asked as a forward proxy: serve the path of the absolute URL.
            path = "/" + path.split("://", 1)[1].partition("/")[2]
        if path.startswith("/flaky/"):
            with LOCK:
                first = path not in FLAKY_SEEN
                FLAKY_SEEN.add(path)
            if first:
                self.send_plain(500, "try again later\n")
                return
            path = path[len("/flaky"):]
        if path.startswith("/redirect/"):
            self.send_response(302)
            self.send_header("Location", path[len("/redirect"):])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/downgrade/"):
            self.send_response(302)
            self.send_header("Location", "http://127.0.0.1:%d%s" % (HTTP_PORT, path[len("/downgrade"):]))
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path.startswith("/gzip/"):
            body = gzip.compress(b"\0" * int(path[len("/gzip/"):]))
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        name = os.path.normpath(path.lstrip("/"))
        full = os.path.join(ROOT, name)
        if name.startswith("..") or not os.path.isfile(full):
            self.send_plain(404, "not found\n")
            return
        with open(full, "rb") as f:
            body = f.read()
        etag = '"%s"' % hashlib.sha1(body).hexdigest()
        mtime = email.utils.formatdate(os.path.getmtime(full), usegmt=True)
        if self.headers.get("If-None-Match") == etag:
            self.send_response(304)
            self.send_header("ETag", etag)
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("ETag", etag)
        self.send_header("Last-Modified", mtime)
        self.end_headers()
        self.wfile.write(body)


def main():
    global ROOT, HTTP_PORT
    ap = argparse.ArgumentParser()
    ap.add_argument("--dir", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    ROOT = args.dir

    servers = [ThreadingHTTPServer(("127.0.0.1", 0), Handler)]
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        tls = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        tls.socket = ctx.wrap_socket(tls.socket, server_side=True)
        servers.append(tls)
    for s in servers:
        s.daemon_threads = True
        threading.Thread(target=s.serve_forever, daemon=True).start()
    ports = [s.server_address[1] for s in servers] + [0]
    HTTP_PORT = ports[0]
    print("%d %d" % (ports[0], ports[1]), flush=True)
    sys.stdin.read()    # until the test closes our stdin or exits


if __name__ == "__main__":
    main()
