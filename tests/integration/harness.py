#!/usr/bin/env python3
"""Integration test harness for sitesync: real daemons, real PostgreSQL, real TLS.

One Harness owns everything a test needs, all of it under one temporary
directory:

  ROOT/pg/       a private PostgreSQL cluster (unix socket only, no fsync),
                 one database per site
  ROOT/certs/    the hierarchy CA and one certificate per site, made with
                 deploy/sitesync-certs
  ROOT/sites/X/  per site: sitesync.conf, state dir, control socket, sync
                 log and the daemon's stderr (sitesyncd.log)
  ROOT/pids/     pids of running daemons, for the reaper

Teardown is guaranteed three ways: the Harness context manager, an atexit
hook (SIGTERM is turned into an exception so both run), and a reaper process
in its own session that stops the cluster and the daemons if the test
process dies without cleaning up (SIGKILL, meson's timeout).

Environment:
  SS_SITESYNCD, SS_SITESYNC   paths of the daemon and CLI binaries
  SS_SOURCE_ROOT              source tree (deploy/sitesync-certs, tests/)
  SS_PG_BIN                   PostgreSQL server binaries (default: newest
                              /usr/lib/postgresql/*/bin)
  SS_KEEP_TMP=1               keep ROOT after the test (path is printed)

Tests call harness.main(test_fn) which maps the outcome to exit codes:
0 passed, 1 failed, 77 skipped.
"""

import atexit
import errno
import fcntl
import glob
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import time
import traceback

SKIP = 77

# Daemon log text that fails a test whatever else happened.
SANITIZER_PATTERNS = ("AddressSanitizer", "runtime error:", "LeakSanitizer")

PORT_LOCK_DIR = os.path.join(tempfile.gettempdir(), "sitesync-test-ports")


class TestFailure(Exception):
    """A check failed; the message says which."""


class Skip(Exception):
    """The test cannot run here (missing PostgreSQL server binaries...)."""


class NotYet(Exception):
    """Raised by a wait_for predicate to say what it is still waiting for."""


class Terminated(BaseException):
    """SIGTERM arrived: unwind through every finally block."""


def log(msg):
    sys.stderr.write("[%s] %s\n" % (time.strftime("%H:%M:%S"), msg))
    sys.stderr.flush()


def source_root():
    env = os.environ.get("SS_SOURCE_ROOT")
    if env:
        return os.path.abspath(env)
    return os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def find_pg_bin():
    env = os.environ.get("SS_PG_BIN")
    cands = [env] if env else []

    def ver(path):
        m = re.search(r"/postgresql/(\d+)/bin", path)
        return int(m.group(1)) if m else 0

    cands += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=ver, reverse=True)
    for d in cands:
        if d and all(os.access(os.path.join(d, b), os.X_OK)
                     for b in ("initdb", "pg_ctl", "postgres")):
            return d
    return None


# ---------------------------------------------------------------------------
# Polling


_ACTIVE = []      # live harnesses, for log tails on timeout and for atexit


def wait_for(predicate, timeout, what, interval=0.2):
    """Poll predicate() until it returns a true value; return that value.

    Exceptions raised by the predicate count as "not yet" (the last one is
    reported). On timeout print the tails of every daemon log and raise
    TestFailure naming `what`.
    """
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        for h in _ACTIVE:
            h.check_alive()
        try:
            res = predicate()
            if res:
                return res
            last_exc = None
        except (TestFailure, Terminated):
            raise
        except Exception as e:      # noqa: BLE001 - reported on timeout
            last_exc = e
        if time.monotonic() >= deadline:
            break
        time.sleep(interval)
    for h in _ACTIVE:
        h.print_log_tails()
    msg = "timed out after %ss waiting for %s" % (timeout, what)
    if isinstance(last_exc, NotYet):
        msg += " (%s)" % (last_exc,)
    elif last_exc is not None:
        msg += " (last error: %r)" % (last_exc,)
    raise TestFailure(msg)


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


# ---------------------------------------------------------------------------
# Ports


class PortLock:
    """A free loopback port, held under a lock file until release().

    Binding port 0 finds a port the kernel considers free; the flock keeps
    other test processes running in parallel from handing out the same one
    between our release of the socket and the daemon's bind.
    """

    def __init__(self):
        if not os.path.isdir(PORT_LOCK_DIR):
            os.makedirs(PORT_LOCK_DIR, exist_ok=True)
            try:
                os.chmod(PORT_LOCK_DIR, 0o1777)    # shared by every user's tests
            except OSError:
                pass
        for _ in range(200):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            fd = os.open(os.path.join(PORT_LOCK_DIR, "%d.lock" % port),
                         os.O_RDWR | os.O_CREAT, 0o666)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                os.close(fd)
                continue
            self.port = port
            self.fd = fd
            return
        raise TestFailure("no free loopback port found")

    def release(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


def control_request(site, cmd, args, timeout=30):
    """One request on a site's control socket, as the CLI (or another
    client) sends it: a JSON line out, a JSON line back; returns the reply."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as c:
        c.settimeout(timeout)
        c.connect(site.control)
        c.sendall((json.dumps({"cmd": cmd, "args": args}) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = c.recv(65536)
            if not chunk:
                break
            buf += chunk
    return json.loads(buf)


# ---------------------------------------------------------------------------
# Protobuf, by hand: just what the raw-socket tests need.


def pb_varint(n):
    if n < 0:
        n += 1 << 64            # negative int32/int64: 10-byte two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def pb_field_varint(field, n):
    return pb_varint(field << 3 | 0) + pb_varint(n)


def pb_field_bytes(field, data):
    if isinstance(data, str):
        data = data.encode()
    return pb_varint(field << 3 | 2) + pb_varint(len(data)) + data


def pb_read_varint(buf, pos):
    n = 0
    shift = 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated varint")
        b = buf[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return n, pos
        if shift >= 70:
            raise ValueError("varint too long")


def pb_decode(buf):
    """Decode one message level into a list of (field, wiretype, value)."""
    out = []
    pos = 0
    while pos < len(buf):
        key, pos = pb_read_varint(buf, pos)
        field, wt = key >> 3, key & 7
        if wt == 0:
            val, pos = pb_read_varint(buf, pos)
        elif wt == 2:
            ln, pos = pb_read_varint(buf, pos)
            if pos + ln > len(buf):
                raise ValueError("truncated field")
            val = bytes(buf[pos:pos + ln])
            pos += ln
        elif wt == 1:
            val = bytes(buf[pos:pos + 8])
            pos += 8
        elif wt == 5:
            val = bytes(buf[pos:pos + 4])
            pos += 4
        else:
            raise ValueError("bad wire type %d" % wt)
        out.append((field, wt, val))
    return out


def pb_signed(n, bits=64):
    """Reinterpret a decoded varint as a signed integer."""
    n &= (1 << 64) - 1
    if n >= 1 << 63:
        n -= 1 << 64
    return n


FRAME_HELLO = 1
FRAME_SYNC_REQUEST = 2
FRAME_PULL_REQUEST = 3
FRAME_PULL_DONE = 6
FRAME_PING = 8
FRAME_ERROR = 10
FRAME_NAMES = {1: "Hello", 2: "SyncRequest", 3: "PullRequest", 4: "PullStart",
               5: "Batch", 6: "PullDone", 7: "StatusReport", 8: "Ping",
               9: "Pong", 10: "Error", 11: "BundleHeader", 12: "BundleEnd"}


def frame(field, body):
    """One wire frame: 4-byte big-endian length, then Frame{field: body}."""
    payload = pb_field_bytes(field, body)
    return struct.pack(">I", len(payload)) + payload


def proto_version():
    """SS_PROTO_VERSION of the source tree: what a raw child speaks unless
    a test asks for another version (older ones may no longer be served)."""
    text = open(os.path.join(source_root(), "proto", "version.h")).read()
    return int(re.search(r"#define SS_PROTO_VERSION (\d+)", text).group(1))


def hello_body(site, catalog_version=0, protocol_version=None,
               software_version="0.1.0-test"):
    if protocol_version is None:
        protocol_version = proto_version()
    return (pb_field_varint(1, protocol_version) + pb_field_bytes(2, site)
            + pb_field_bytes(3, software_version)
            + pb_field_varint(4, catalog_version))


def hello_frame(site, catalog_version=0, protocol_version=None):
    return frame(FRAME_HELLO, hello_body(site, catalog_version, protocol_version))


def decode_frame_payload(payload):
    """Frame payload -> (field number, message body bytes)."""
    fields = pb_decode(payload)
    if len(fields) != 1 or fields[0][1] != 2:
        raise ValueError("not a Frame with one message: %r" % (fields,))
    return fields[0][0], fields[0][2]


def decode_error(body):
    code, msg = 0, ""
    for f, wt, v in pb_decode(body):
        if f == 1 and wt == 0:
            code = pb_signed(v)
        elif f == 2 and wt == 2:
            msg = v.decode("utf-8", "replace")
    return code, msg


def decode_hello(body):
    res = {}
    for f, wt, v in pb_decode(body):
        if f == 1:
            res["protocol_version"] = v
        elif f == 2:
            res["site"] = v.decode("utf-8", "replace")
        elif f == 3:
            res["software_version"] = v.decode("utf-8", "replace")
        elif f == 4:
            res["catalog_version"] = v
    return res


class PeerResult:
    """What a raw peer saw: frames received and how the connection ended."""

    def __init__(self):
        self.frames = []        # [(field, body)]
        self.closed = False     # EOF, reset or TLS alert seen
        self.how = "open"       # description of the end
        self.undecodable = 0

    def kinds(self):
        return [FRAME_NAMES.get(f, str(f)) for f, _ in self.frames]

    def errors(self):
        return [decode_error(b) for f, b in self.frames if f == FRAME_ERROR]

    def has(self, field):
        return any(f == field for f, _ in self.frames)

    def __repr__(self):
        return "PeerResult(frames=%s, closed=%s, how=%r)" % (
            self.kinds(), self.closed, self.how)


def read_frames(sock, timeout, stop_after=None, result=None):
    """Read frames from sock until the peer closes or `timeout` seconds pass.

    stop_after: a frame field number; return as soon as one arrives (the
    connection stays open). Never raises for connection errors: they are
    the expected outcome of the refusal tests and end up in result.how.
    """
    res = result if result is not None else PeerResult()
    buf = b""
    deadline = time.monotonic() + timeout
    while True:
        while len(buf) >= 4:
            ln = struct.unpack(">I", buf[:4])[0]
            if len(buf) < 4 + ln:
                break
            payload, buf = buf[4:4 + ln], buf[4 + ln:]
            try:
                res.frames.append(decode_frame_payload(payload))
            except ValueError:
                res.undecodable += 1
                continue
            if stop_after is not None and res.frames[-1][0] == stop_after:
                return res
        left = deadline - time.monotonic()
        if left <= 0:
            res.how = "timeout (connection still open)"
            return res
        sock.settimeout(min(left, 1.0))
        try:
            data = sock.recv(65536)
        except socket.timeout:
            continue
        except ssl.SSLError as e:
            if isinstance(e, ssl.SSLWantReadError):
                continue
            res.closed, res.how = True, "TLS error: %s" % (e,)
            return res
        except OSError as e:
            res.closed, res.how = True, "socket error: %s" % (e,)
            return res
        if not data:
            res.closed, res.how = True, "EOF"
            return res
        buf += data


def send_quietly(sock, data):
    """sendall that treats a peer's close as an outcome, not an error."""
    try:
        sock.sendall(data)
        return None
    except (OSError, ssl.SSLError) as e:
        return "send failed: %s" % (e,)


FRAME_BATCH = 5


def entry_hash(revision, content):
    """sha256(be32(revision) || content): an entry's hash, as digest_entry_hash()."""
    return hashlib.sha256(struct.pack(">I", revision) + content).digest()


def sum_digest(hashes):
    """The protocol-2 catalog digest: entry hashes added mod 2^256 (hex)."""
    total = sum(int.from_bytes(x, "big") for x in hashes) % (1 << 256)
    return "%064x" % total


def set_digest(hashes):
    """The protocol-3 set digest (docs/ARCHITECTURE.md): SHAKE128 of each
    entry hash into 1024 little-endian 16-bit lanes, added lane-wise mod
    2^16, then SHA-256 of the state; written from the definition, not from
    catalog/digest.c, so the two check each other."""
    lanes = [0] * 1024
    for x in hashes:
        ex = struct.unpack("<1024H", hashlib.shake_128(b"sitesync lthash16 v1" + x).digest(2048))
        lanes = [(a + b) & 0xFFFF for a, b in zip(lanes, ex)]
    return hashlib.sha256(b"sitesync set digest v1" + struct.pack("<1024H", *lanes)).hexdigest()


def raw_pull(h, port, code, protocol_version, have=0, timeout=60):
    """Pull as a bare child speaking `protocol_version`: Hello, PullRequest
    (have), then every frame up to PullDone. Returns (entries as
    [(id, revision, content)], PullDone as {field: value}, PeerResult)."""
    c = h.certs
    res = PeerResult()
    s, err = tls_connect(port, c.ca, c.cert(code), c.key(code))
    check(s is not None, "TLS to the parent failed: %s" % err)
    try:
        e = send_quietly(s, hello_frame(code, have, protocol_version=protocol_version))
        check(not e, "sending Hello failed: %s" % e)
        read_frames(s, timeout, stop_after=FRAME_HELLO, result=res)
        check(res.has(FRAME_HELLO), "no Hello from the parent: %r %r" % (res, res.errors()))
        e = send_quietly(s, frame(FRAME_PULL_REQUEST, pb_field_varint(1, have)))
        check(not e, "sending PullRequest failed: %s" % e)
        read_frames(s, timeout, stop_after=FRAME_PULL_DONE, result=res)
    finally:
        s.close()
    check(res.has(FRAME_PULL_DONE), "no PullDone: %r %r" % (res, res.errors()))
    entries = []
    for f, body in res.frames:
        if f != FRAME_BATCH:
            continue
        ids, ents = [], []
        for fld, _, v in pb_decode(body):
            if fld == 1:
                ids.append(v.decode())
            elif fld == 2:
                ent = dict((ef, ev) for ef, _, ev in pb_decode(v))
                ents.append((ent.get(1, 0), ent.get(2, b"")))
        entries += [(i, r, c_) for i, (r, c_) in zip(ids, ents)]
    done = [b for f, b in res.frames if f == FRAME_PULL_DONE][-1]
    return entries, dict((fld, v) for fld, _, v in pb_decode(done)), res


def tls_client_context(ca, cert=None, key=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    ctx.load_verify_locations(ca)
    if cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def file_mark(path):
    """Where path ends now (0 while it does not exist), for file_since()."""
    try:
        return os.path.getsize(path)
    except FileNotFoundError:
        return 0


def file_since(path, mark):
    """The text of path written after file_mark() gave mark."""
    try:
        with open(path, "rb") as f:
            f.seek(mark)
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def connect_nonblocking(port, src=None):
    """A plain TCP socket to 127.0.0.1:port (from address src, if given),
    non-blocking, its connect started but not awaited."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if src is not None:
        s.bind((src, 0))
    s.setblocking(False)
    try:
        s.connect(("127.0.0.1", port))
    except BlockingIOError:
        pass
    return s


def tls_connect(port, ca, cert=None, key=None, host="127.0.0.1", timeout=10):
    """Connect over TLS 1.3 with an optional client certificate.

    Returns (sock, None) or (None, reason) when the handshake itself fails;
    with TLS 1.3 a refused client certificate usually shows only on the
    first read after the handshake (TOOLCHAIN.md), so callers must write
    and then read.
    """
    ctx = tls_client_context(ca, cert, key)
    raw = socket.create_connection((host, port), timeout=timeout)
    try:
        s = ctx.wrap_socket(raw, server_hostname="localhost")
    except (ssl.SSLError, OSError) as e:
        raw.close()
        return None, "handshake failed: %s" % (e,)
    return s, None


def keypair(h, name="m"):
    """An Ed25519 key pair keys/NAME.key and keys/NAME.pub under the run."""
    key = h.path("keys", name + ".key")
    pub = h.path("keys", name + ".pub")
    os.makedirs(os.path.dirname(key), exist_ok=True)
    for argv in (["openssl", "genpkey", "-algorithm", "ed25519", "-out", key],
                 ["openssl", "pkey", "-in", key, "-pubout", "-out", pub]):
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, text=True)
        check(p.returncode == 0, "%s failed: %s" % (argv[:2], p.stderr))
    return key, pub


def lock_catalog_state(h, site, seconds):
    """A psql session holding SITE's catalog_state exclusively for SECONDS
    (a slow database); returns once the lock is granted. The caller collects
    the session (communicate) when done."""
    return lock_table(h, site, "catalog_state", seconds)


def lock_table(h, site, table, seconds):
    """lock_catalog_state() for any of SITE's tables."""
    locker = subprocess.Popen(
        h.pg.psql_argv(site.dbname) + ["-c", "BEGIN; LOCK TABLE %s IN "
                                       "ACCESS EXCLUSIVE MODE; SELECT pg_sleep(%d); COMMIT;"
                                       % (table, seconds)],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        wait_for(lambda: site.sql("SELECT count(*) FROM pg_locks l JOIN pg_class c ON "
                                  "c.oid = l.relation WHERE c.relname = '%s' "
                                  "AND l.mode = 'AccessExclusiveLock' AND l.granted" % table)
                 == "1", 10, "the lock on %s's %s" % (site.code, table))
    except BaseException:
        locker.kill()
        locker.communicate()
        raise
    return locker


# ---------------------------------------------------------------------------
# PostgreSQL


def _is_root():
    return os.geteuid() == 0


def temp_parent():
    """Where ROOT goes: $TMPDIR, unless as root the postgres user cannot
    reach it (TMPDIR inside root's 0700 home); then /tmp."""
    d = tempfile.gettempdir()
    if not _is_root() or d == "/tmp":
        return d
    p = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-x", d],
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)
    return d if p.returncode == 0 else "/tmp"


class PgCluster:
    """A throwaway cluster listening on a unix socket only."""

    PORT = 5432     # only names the socket file; the socket dir is private

    def __init__(self, root, bindir, name="pg"):
        self.bindir = bindir
        self.base = os.path.join(root, name)
        self.data = os.path.join(self.base, "data")
        self.sockdir = os.path.join(self.base, "sock")
        self.logfile = os.path.join(self.base, "postgres.log")
        self.running = False
        if _is_root():
            self.run_as = "postgres"
            self.user = "postgres"
        else:
            self.run_as = None
            self.user = pwd.getpwuid(os.geteuid()).pw_name
        psql = os.path.join(bindir, "psql")
        self.psql = psql if os.access(psql, os.X_OK) else shutil.which("psql")
        if not self.psql:
            raise Skip("psql not found")

    def _cmd(self, argv):
        if self.run_as:
            return ["runuser", "-u", self.run_as, "--"] + argv
        return argv

    def _run(self, argv, timeout=120):
        p = subprocess.run(self._cmd(argv), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True)
        if p.returncode != 0:
            raise TestFailure("%s failed (%d): %s" % (argv[0], p.returncode,
                                                      p.stdout[-2000:]))
        return p.stdout

    def pg_ctl_argv(self):
        return self._cmd([os.path.join(self.bindir, "pg_ctl"), "-D", self.data])

    def init_and_start(self, extra=""):
        """extra: more server options ("-c name=value ...")."""
        os.makedirs(self.sockdir)
        if self.run_as:
            pw = pwd.getpwnam(self.run_as)
            for d in (self.base, self.sockdir):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(self.base, 0o700)
        t0 = time.monotonic()
        self._run([os.path.join(self.bindir, "initdb"), "--no-sync", "-A", "trust",
                   "-E", "UTF8", "--locale=C.UTF-8", "-U", self.user,
                   "-D", self.data])
        opts = ("-k %s -p %d -c listen_addresses='' -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off "
                "-c max_connections=400 -c shared_buffers=128MB %s"
                % (self.sockdir, self.PORT, extra))
        self.running = True     # from here on, teardown tries to stop it
        self._run([os.path.join(self.bindir, "pg_ctl"), "-w", "-t", "60",
                   "-D", self.data, "-l", self.logfile, "-o", opts, "start"])
        log("PostgreSQL up in %.1fs (socket %s)" % (time.monotonic() - t0,
                                                     self.sockdir))

    def stop(self):
        if not self.running:
            return
        self.running = False
        for mode in ("fast", "immediate"):
            p = subprocess.run(self._cmd([os.path.join(self.bindir, "pg_ctl"),
                                          "-D", self.data, "-w", "-t", "30",
                                          "-m", mode, "stop"]),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True)
            if p.returncode == 0:
                return
        log("warning: could not stop PostgreSQL: %s" % p.stdout.strip())

    def conninfo(self, dbname):
        return "host=%s port=%d dbname=%s user=%s" % (self.sockdir, self.PORT,
                                                       dbname, self.user)

    def psql_argv(self, dbname):
        return [self.psql, "-X", "-At", "-q", "-v", "ON_ERROR_STOP=1",
                "-h", self.sockdir, "-p", str(self.PORT), "-U", self.user,
                "-d", dbname]

    def query(self, dbname, sql, timeout=60):
        """Run sql, return stdout (rows '|'-separated); raise on error."""
        p = subprocess.run(self.psql_argv(dbname) + ["-c", sql],
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True, timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("psql on %s failed: %s" % (dbname, p.stderr.strip()))
        return p.stdout.rstrip("\n")

    def create_db(self, dbname):
        self.query("postgres", 'CREATE DATABASE "%s"' % dbname)


# ---------------------------------------------------------------------------
# Sites


class Site:
    """One sitesyncd: its config, process, CLI and database."""

    def __init__(self, h, code, parent=None, listen=True, upstream=None,
                 extra=None):
        self.h = h
        self.code = code
        self.parent = parent
        self.dbname = "site_" + code.lower()
        self.dir = os.path.join(h.root, "sites", code)
        self.state_dir = os.path.join(self.dir, "state")
        self.conf = os.path.join(self.dir, "sitesync.conf")
        self.control = os.path.join(self.dir, "control.sock")
        self.sync_log = os.path.join(self.dir, "sync.log")
        self.logfile = os.path.join(self.dir, "sitesyncd.log")
        self.upstream = upstream
        self.extra = extra or {}
        self.portlock = PortLock() if listen else None
        self.port = self.portlock.port if listen else None
        self.proc = None
        self.unclean = []       # exit problems found when stopping
        self.starts = 0
        os.makedirs(self.state_dir)
        h.certs.site(code)
        h.pg.create_db(self.dbname)
        self.write_config()

    def __repr__(self):
        return "Site(%s)" % self.code

    # -- configuration ---------------------------------------------------
    def config_sections(self):
        c = self.h.certs
        sec = {
            "site": {"code": self.code, "state_dir": self.state_dir},
            "database": {"conninfo": self.h.pg.conninfo(self.dbname)},
            "tls": {"ca": c.ca, "cert": c.cert(self.code), "key": c.key(self.code)},
            "control": {"socket": self.control},
            "log": {"sync_log": self.sync_log, "level": "debug"},
            "replication": {"heartbeat_seconds": "1", "heartbeat_timeout": "3",
                            "poll_seconds": "2", "reconnect_max": "2"},
        }
        if self.port:
            sec["listen"] = {"address": "127.0.0.1:%d" % self.port}
        if self.parent is not None:
            # A child pins its parent by site code ([parent] code).
            sec["parent"] = {"address": "127.0.0.1:%d" % self.parent.port,
                             "code": self.parent.code}
        if self.upstream:
            sec["upstream"] = {"url": self.upstream}
        for name, kv in self.extra.items():
            sec.setdefault(name, {}).update(kv)
        below_top = self.parent is not None or \
            sec.get("parent", {}).get("mode") == "disconnected"
        if below_top and "public_key" not in sec.get("trust", {}):
            # Tests without manifest keys waive signature checks explicitly.
            sec.setdefault("trust", {})["allow_unsigned"] = "true"
        return sec

    def write_config(self):
        lines = ["; written by tests/integration/harness.py"]
        for name, kv in self.config_sections().items():
            lines.append("")
            lines.append("[%s]" % name)
            for k, v in kv.items():
                lines.append("%s = %s" % (k, v))
        with open(self.conf, "w") as f:
            f.write("\n".join(lines) + "\n")

    # -- process control -------------------------------------------------
    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def start(self, wait=True, timeout=60, env=None, writer=True):
        """env: variables added to the daemon's environment for this start.
        writer: with wait, also wait until it holds the writer lock (False
        for a daemon meant to be a standby)."""
        check(not self.running(), "%s already running" % self.code)
        self.starts += 1
        with open(self.logfile, "a") as f:
            f.write("=== harness: start #%d of %s at %s ===\n"
                    % (self.starts, self.code, time.strftime("%H:%M:%S")))
        self.start_mark = self.log_mark()
        out = open(self.logfile, "a")
        try:
            self.proc = subprocess.Popen([self.h.sitesyncd, "-c", self.conf],
                                         stdin=subprocess.DEVNULL, stdout=out,
                                         stderr=subprocess.STDOUT,
                                         cwd=self.dir,
                                         env=dict(os.environ, **env) if env else None)
        finally:
            out.close()
        self.h.record_pid(self.code, self.proc.pid)
        if wait:
            self.wait_ready(timeout, writer=writer)
        return self

    def wait_ready(self, timeout=60, writer=True):
        """The control socket answers and, with writer, this start took the
        writer lock: until then the daemon is a standby and refuses syncs
        and imports ("this daemon is a standby for site ...")."""
        active = "this daemon is the active writer for site %s" % self.code

        def ready():
            if not self.running():
                raise TestFailure("%s exited during start (status %s); log:\n%s"
                                  % (self.code, self.proc.returncode,
                                     self.log_tail(40)))
            if not os.path.exists(self.control):
                return False
            if writer and active not in self.log_since(getattr(self, "start_mark", 0)):
                return False
            rc, _, _ = self.cli("status", "--json", timeout=10)
            return rc == 0
        wait_for(ready, timeout, "%s to answer on its control socket%s"
                 % (self.code, " as the active writer" if writer else ""))

    def _reap(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout=20):
        """SIGTERM; the daemon must exit 0 in time, else it counts as unclean."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            rc = self._reap(timeout)
            if rc is None:
                self.unclean.append("did not stop within %ds of SIGTERM" % timeout)
                self.proc.kill()
                self.proc.wait()
            elif rc != 0:
                self.unclean.append("exited with status %d after SIGTERM" % rc)
        else:
            self.unclean.append("had exited on its own with status %s"
                                % self.proc.returncode)
        self.h.forget_pid(self.code)
        self.proc = None

    def kill(self):
        """kill -9: no chance to clean up (a crash)."""
        if self.running():
            self.proc.kill()
            self.proc.wait()
        self.h.forget_pid(self.code)
        self.proc = None

    def restart(self, wait=True):
        self.stop()
        return self.start(wait=wait)

    # -- CLI and database --------------------------------------------------
    def cli(self, *args, timeout=60):
        """Run `sitesync -c CONF ARGS`; return (rc, stdout, stderr)."""
        try:
            p = subprocess.run([self.h.sitesync, "-c", self.conf] + list(args),
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:
            return -1, "", "timed out after %ss" % timeout
        return p.returncode, p.stdout, p.stderr

    def cli_ok(self, *args, timeout=60):
        rc, out, err = self.cli(*args, timeout=timeout)
        check(rc == 0, "%s: sitesync %s exited %d: %s%s"
              % (self.code, " ".join(args), rc, out, err))
        return out

    def status_json(self):
        rc, out, err = self.cli("status", "--json", timeout=20)
        if rc != 0:
            raise RuntimeError("status --json exited %d: %s" % (rc, err.strip()))
        return json.loads(out)

    def sql(self, query):
        return self.h.pg.query(self.dbname, query)

    def catalog_state(self):
        """(version, digest hex, entries) of the visible catalog, or None."""
        out = self.sql("SELECT version, encode(digest,'hex'), entries "
                       "FROM catalog_state")
        if not out:
            return None
        v, d, n = out.split("|")
        return int(v), d, int(n)

    def fingerprint(self):
        """(row count, md5 over id:revision:entry_hash) of the updates table."""
        out = self.sql("SELECT count(*), md5(coalesce(string_agg(update_id::text"
                       "||':'||revision||':'||encode(entry_hash,'hex'), ',' "
                       "ORDER BY update_id),'')) FROM updates")
        n, md5 = out.split("|")
        return int(n), md5

    # -- logs ----------------------------------------------------------------
    def log_text(self):
        try:
            with open(self.logfile, errors="replace") as f:
                return f.read()
        except FileNotFoundError:
            return ""

    def log_mark(self):
        return file_mark(self.logfile)

    def log_since(self, mark):
        return file_since(self.logfile, mark)

    def log_tail(self, n=40):
        return "\n".join(self.log_text().splitlines()[-n:])


class Certs:
    """The hierarchy CA and site certificates, via deploy/sitesync-certs."""

    def __init__(self, h, dirname="certs", name="sitesync test CA"):
        self.h = h
        self.dir = os.path.join(h.root, dirname)
        self.ca = os.path.join(self.dir, "ca.pem")
        # Long enough that no test site is inside [status] cert_warning_days
        # (default 30) unless a test asks for a short-lived certificate.
        self._run("ca", self.dir, "--days", "3650", "--name", name)

    def _run(self, *args):
        p = subprocess.run([self.h.certs_tool] + list(args),
                           stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True, timeout=60)
        if p.returncode != 0:
            raise TestFailure("sitesync-certs %s failed: %s" % (" ".join(args),
                                                               p.stdout))
        return p.stdout

    def site(self, code, days=365):
        if not os.path.exists(self.cert(code)):
            self._run("site", self.dir, code, "--days", str(days))
        return self.cert(code), self.key(code)

    def renew(self, code, days):
        self._run("renew", self.dir, code, "--days", str(days))

    def cert(self, code):
        return os.path.join(self.dir, code + ".pem")

    def key(self, code):
        return os.path.join(self.dir, code + ".key")


_REAPER = r"""
import os, shutil, signal, subprocess, sys, time
ppid, root, keep = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "1"
pg_ctl = sys.argv[4:]
while os.getppid() == ppid and os.path.isdir(root):
    time.sleep(0.5)
if not os.path.isdir(root):
    sys.exit(0)
piddir = os.path.join(root, "pids")
for name in os.listdir(piddir) if os.path.isdir(piddir) else []:
    try:
        os.kill(int(open(os.path.join(piddir, name)).read()), signal.SIGKILL)
    except (OSError, ValueError):
        pass
subprocess.run(pg_ctl + ["-m", "immediate", "-w", "stop"],
               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
if not keep:
    shutil.rmtree(root, ignore_errors=True)
"""


class Harness:
    """Owns the temp dir, the cluster, the certificates and the sites."""

    def __init__(self, name, need_daemon=True):
        self.name = name
        self.src = source_root()
        self.sitesyncd = os.environ.get("SS_SITESYNCD", "")
        self.sitesync = os.environ.get("SS_SITESYNC", "")
        self.certs_tool = os.path.join(self.src, "deploy", "sitesync-certs")
        self.keep = os.environ.get("SS_KEEP_TMP") == "1"
        self.pgbin = find_pg_bin()
        if not self.pgbin:
            raise Skip("PostgreSQL server binaries (initdb, pg_ctl, postgres) not found")
        if not shutil.which("openssl"):
            raise Skip("openssl not found")
        if need_daemon:
            for var, path in (("SS_SITESYNCD", self.sitesyncd),
                              ("SS_SITESYNC", self.sitesync)):
                if not path:
                    raise Skip("%s not set (run the test through meson)" % var)
                # Set by meson but missing: a broken build, not a skip.
                if not os.access(path, os.X_OK):
                    raise TestFailure("%s=%s is not an executable" % (var, path))
        self.root = None
        self.pg = None
        self.sites = {}
        self.reaper = None
        self.failures = []
        self._torn_down = False

    # -- setup -----------------------------------------------------------
    def __enter__(self):
        _ACTIVE.append(self)
        atexit.register(self.teardown)
        signal.signal(signal.SIGTERM, _on_sigterm)
        self.root = tempfile.mkdtemp(prefix="ss-%s-" % self.name,
                                     dir=temp_parent())
        os.chmod(self.root, 0o755)     # the postgres user must reach ROOT/pg
        os.makedirs(os.path.join(self.root, "pids"))
        log("temp dir %s" % self.root)
        self.pg = PgCluster(self.root, self.pgbin)
        self._start_reaper()
        self.pg.init_and_start()
        self.certs = Certs(self)
        return self

    def __exit__(self, exc_type, exc, tb):
        ok = exc_type is None
        self.teardown(print_logs=not ok)
        if ok and self.failures:
            raise TestFailure("; ".join(self.failures))
        return False

    def _start_reaper(self):
        self.reaper = subprocess.Popen(
            [sys.executable, "-c", _REAPER, str(os.getpid()), self.root,
             "1" if self.keep else "0"] + self.pg.pg_ctl_argv(),
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True)

    def record_pid(self, code, pid):
        with open(os.path.join(self.root, "pids", code), "w") as f:
            f.write(str(pid))

    def forget_pid(self, code):
        try:
            os.unlink(os.path.join(self.root, "pids", code))
        except FileNotFoundError:
            pass

    def add_site(self, code, parent=None, listen=True, upstream=None, extra=None):
        check(code not in self.sites, "site %s defined twice" % code)
        s = Site(self, code, parent=parent, listen=listen, upstream=upstream,
                 extra=extra)
        self.sites[code] = s
        return s

    def path(self, *parts):
        return os.path.join(self.root, *parts)

    def add_top(self, entries, seed, extra=None):
        """Site CAS whose upstream is a generated catalog (round 1) of
        `entries` entries; returns the site and the catalog's path, which a
        test may regenerate for later rounds."""
        catalog = self.gen_catalog(self.path("upstream", "catalog.xml"), entries, 1, seed)
        return self.add_site("CAS", upstream="file://" + catalog, extra=extra), catalog

    def gen_catalog(self, out, entries, rnd, seed=1):
        gen = os.path.join(self.src, "tests", "gen_catalog.py")
        check(os.path.exists(gen), "catalog generator %s is missing" % gen)
        os.makedirs(os.path.dirname(out), exist_ok=True)
        tmp = out + ".tmp"
        p = subprocess.run([sys.executable, gen, "--entries", str(entries),
                            "--round", str(rnd), "--seed", str(seed),
                            "--out", tmp], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=300)
        check(p.returncode == 0, "gen_catalog.py failed: %s" % p.stdout[-2000:])
        os.replace(tmp, out)    # the daemon never sees a half-written file
        return out

    def start_tree(self, *sites):
        """Start sites parents first, each approved at its parent just
        before it starts."""
        for s in sites:
            if s.parent is not None:
                s.parent.cli_ok("child", "add", s.code)
            s.start()

    # -- hierarchy-wide checks ---------------------------------------------
    def start_levels(self, top, *levels):
        """Start top, then level by level: each site's parent adds it as
        a child, then the level's sites start."""
        top.start()
        for level in levels:
            for site in level:
                site.parent.cli_ok("child", "add", site.code)
            for site in level:
                site.start()

    def wait_converged(self, top, sites, timeout, what=None):
        """Wait until every site holds top's version and digest and the
        same rows; return top's (version, digest, entries)."""
        def converged():
            want = top.catalog_state()
            if want is None or want[0] == 0:
                raise NotYet("%s holds no catalog yet" % top.code)
            for s in sites:
                got = s.catalog_state()
                if got != want:
                    raise NotYet("%s holds %r, %s holds %r"
                                 % (s.code, got, top.code, want))
            fp = top.fingerprint()
            for s in sites:
                if s.fingerprint() != fp:
                    raise TestFailure("%s holds version %d with %s's digest but "
                                      "different rows: %r vs %r"
                                      % (s.code, want[0], top.code,
                                         s.fingerprint(), fp))
            # The top may have moved on meanwhile: only a stable answer counts.
            return want if top.catalog_state() == want else False
        return wait_for(converged, timeout, what or "%s to hold %s's catalog"
                        % ([s.code for s in sites], top.code), interval=0.5)

    def check_alive(self):
        """Fail at once when a daemon the test did not stop has exited."""
        for code, s in self.sites.items():
            if s.proc is not None and s.proc.poll() is not None:
                rc = s.proc.returncode
                s.unclean.append("exited unexpectedly with status %d" % rc)
                s.h.forget_pid(code)
                s.proc = None
                raise TestFailure("%s exited unexpectedly with status %d; log:\n%s"
                                  % (code, rc, s.log_tail(60)))

    def versions(self):
        res = {}
        for code, s in self.sites.items():
            try:
                st = s.catalog_state()
                res[code] = st[0] if st else None
            except Exception:       # noqa: BLE001 - diagnostics only
                res[code] = "?"
        return res

    # -- teardown ------------------------------------------------------------
    def print_log_tails(self, n=30):
        sys.stderr.write("---- catalog versions: %r\n" % (self.versions(),)
                         if self.pg and self.pg.running else "")
        for code, s in self.sites.items():
            sys.stderr.write("---- %s: last %d lines of %s\n%s\n"
                             % (code, n, s.logfile, s.log_tail(n)))
        sys.stderr.flush()

    def check_logs(self):
        for code, s in self.sites.items():
            text = s.log_text()
            found = [(text.index(p), p) for p in SANITIZER_PATTERNS if p in text]
            if found:
                first = min(found)[0]
                # Back up to the start of the report's first line.
                start = text.rfind("\n", 0, first) + 1
                banner = text.rfind("=====", 0, first)
                if banner != -1 and first - banner < 200:
                    start = text.rfind("\n", 0, banner) + 1
                self.failures.append("%s log contains %s" % (
                    code, ", ".join(repr(p) for _, p in sorted(found))))
                sys.stderr.write("---- %s sanitizer report (%s):\n%s\n"
                                 % (code, s.logfile, text[start:start + 8000]))
            for msg in s.unclean:
                self.failures.append("%s %s" % (code, msg))

    def teardown(self, print_logs=False):
        if self._torn_down:
            return
        self._torn_down = True
        if self in _ACTIVE:
            _ACTIVE.remove(self)
        try:
            for s in self.sites.values():
                try:
                    s.stop()
                except Exception as e:      # noqa: BLE001 - keep tearing down
                    self.failures.append("stopping %s: %s" % (s.code, e))
            if print_logs:
                self.print_log_tails()
            self.check_logs()
        finally:
            for s in self.sites.values():
                if s.proc is not None and s.proc.poll() is None:
                    s.proc.kill()
                if s.portlock:
                    s.portlock.release()
            if self.pg:
                self.pg.stop()
            if self.root:
                if self.keep:
                    log("kept temp dir %s" % self.root)
                else:
                    shutil.rmtree(self.root, ignore_errors=True)
            if self.reaper:
                # With ROOT gone (or kept) there is nothing left to reap.
                self.reaper.kill()
                self.reaper.wait()


def _on_sigterm(signum, frame):
    raise Terminated("SIGTERM")


def main(test_fn, name, need_daemon=True):
    """Run test_fn(harness) and exit 0 (pass), 1 (fail) or 77 (skip)."""
    t0 = time.monotonic()
    try:
        with Harness(name, need_daemon=need_daemon) as h:
            test_fn(h)
    except Skip as e:
        log("SKIP %s: %s" % (name, e))
        sys.exit(SKIP)
    except Terminated:
        log("FAIL %s: terminated by SIGTERM" % name)
        sys.exit(1)
    except TestFailure as e:
        log("FAIL %s: %s" % (name, e))
        sys.exit(1)
    except Exception:       # noqa: BLE001 - any crash is a failure
        traceback.print_exc()
        log("FAIL %s" % name)
        sys.exit(1)
    log("PASS %s (%.1fs)" % (name, time.monotonic() - t0))
    sys.exit(0)


# ---------------------------------------------------------------------------
# Self-test: everything but the daemon. Run directly or as the meson test
# `harness_selftest`.


def _selftest_tls(h):
    """openssl s_server requiring client certs vs. our raw TLS client."""
    certs = h.certs
    certs.site("CAS")
    certs.site("P01")
    other = Certs(h, "other-ca", name="foreign CA")
    other.site("P01")
    lock = PortLock()
    port = lock.port
    lock.release()
    srv_log = h.path("s_server.log")
    with open(srv_log, "w") as out:
        srv = subprocess.Popen(
            ["openssl", "s_server", "-accept", "127.0.0.1:%d" % port,
             "-cert", certs.cert("CAS"), "-key", certs.key("CAS"),
             "-CAfile", certs.ca, "-Verify", "1", "-verify_return_error",
             "-tls1_3", "-rev"],
            stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT)
    try:
        def accepting():
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True
        wait_for(accepting, 15, "openssl s_server to listen")
        # s_server serves one client at a time; the probe above was one.
        time.sleep(0.3)

        # Good client: handshake, write, get our bytes back reversed (-rev).
        s, err = tls_connect(port, certs.ca, certs.cert("P01"), certs.key("P01"))
        check(s is not None, "good client handshake: %s" % err)
        s.sendall(b"abcdef\n")
        got = b""
        deadline = time.monotonic() + 10
        while b"fedcba" not in got and time.monotonic() < deadline:
            s.settimeout(1)
            try:
                d = s.recv(100)
            except socket.timeout:
                continue
            if not d:
                break
            got += d
        check(b"fedcba" in got, "s_server echo, got %r" % got)
        s.close()
        log("selftest: TLS 1.3 mutual auth with the hierarchy CA works")

        # Foreign CA: the refusal shows after the handshake, on read.
        time.sleep(0.3)
        s, err = tls_connect(port, certs.ca, other.cert("P01"), other.key("P01"))
        res = PeerResult()
        if s is None:
            res.closed, res.how = True, err
        else:
            e = send_quietly(s, hello_frame("P01"))
            read_frames(s, 10, result=res)
            if e and not res.closed:
                res.closed, res.how = True, e
            s.close()
        check(res.closed and not res.has(FRAME_HELLO),
              "foreign-CA client not refused: %r" % res)
        log("selftest: foreign-CA client refused (%s)" % res.how)
    finally:
        srv.kill()
        srv.wait()


def _selftest_proto():
    f = hello_frame("P01", catalog_version=300)
    ln = struct.unpack(">I", f[:4])[0]
    check(ln == len(f) - 4, "frame length")
    field, body = decode_frame_payload(f[4:])
    check(field == FRAME_HELLO, "frame field")
    hl = decode_hello(body)
    check(hl == {"protocol_version": proto_version(), "site": "P01",
                 "software_version": "0.1.0-test", "catalog_version": 300},
          "hello roundtrip %r" % hl)
    check(pb_varint(300) == b"\xac\x02", "varint 300")
    check(len(pb_varint(-1)) == 10, "negative varint is 10 bytes")
    err = frame(FRAME_ERROR, pb_field_varint(1, -513) + pb_field_bytes(2, "bad"))
    field, body = decode_frame_payload(err[4:])
    check(field == FRAME_ERROR and decode_error(body) == (-513, "bad"),
          "error roundtrip")
    log("selftest: protobuf encoder/decoder")


def _selftest_certs(h):
    """deploy/sitesync-certs: what sites rely on, and its exit codes."""
    tool, d = h.certs_tool, h.certs.dir

    def run(*args):
        p = subprocess.run([tool] + list(args), stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def x509(path, *opts):
        return subprocess.run(["openssl", "x509", "-in", path, "-noout"]
                              + list(opts), stdout=subprocess.PIPE,
                              text=True, check=True).stdout
    cert, key = h.certs.site("S01")
    check(os.stat(key).st_mode & 0o777 == 0o600, "key mode %o" % os.stat(key).st_mode)
    text = x509(cert, "-text")
    for needle in ("CN = S01", "prime256v1", "Digital Signature",
                   "TLS Web Server Authentication", "TLS Web Client Authentication",
                   "DNS:localhost", "IP Address:127.0.0.1", "IP Address:0:0:0:0:0:0:0:1"):
        check(needle in text or needle.replace("prime256v1", "P-256") in text,
              "S01 certificate lacks %r" % needle)
    p = subprocess.run(["openssl", "verify", "-CAfile", h.certs.ca, cert],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    check(p.returncode == 0, "verify: %s" % p.stdout)
    pub, serial = x509(cert, "-pubkey"), x509(cert, "-serial")
    rc, out, err = run("renew", d, "S01", "--days", "5")
    check(rc == 0, "renew: %s" % err)
    check(x509(cert, "-pubkey") == pub and x509(cert, "-serial") != serial,
          "renew must keep the key and change the serial")
    rc, out, err = run("show", cert)
    check(rc == 0 and "CN=S01" in out and "notAfter" in out, "show: %r" % out)
    rc, out, _ = run("--help")
    check(rc == 0 and "Usage" in out, "--help")
    for args, want in ((("ca", d), 2), (("site", d, "s01"), 1), (("site", d, "TOOLONG"), 1),
                       (("bogus",), 1), ((), 1), (("show", d + "/none.pem"), 2),
                       (("site", h.path("nowhere"), "P05"), 2)):
        rc, _, err = run(*args)
        check(rc == want, "sitesync-certs %s: exit %d, want %d" % (" ".join(args), rc, want))
        if want == 1:
            check("Try" in err and "--help" in err, "usage error hint: %r" % err)
    log("selftest: sitesync-certs")


def _selftest(h):
    _selftest_proto()
    _selftest_certs(h)
    # Databases and queries.
    for code in ("CAS", "P01"):
        h.pg.create_db("site_" + code.lower())
    h.pg.query("site_cas", "CREATE TABLE catalog_state (id int, version bigint,"
               " digest bytea, entries bigint)")
    h.pg.query("site_cas", "INSERT INTO catalog_state VALUES (1, 7, "
               "'\\x00ff', 3)")
    out = h.pg.query("site_cas", "SELECT version, encode(digest,'hex'), entries"
                     " FROM catalog_state")
    check(out == "7|00ff|3", "psql query result %r" % out)
    enc = h.pg.query("site_p01", "SHOW server_encoding")
    check(enc == "UTF8", "encoding %r" % enc)
    mc = h.pg.query("site_p01", "SHOW max_connections")
    check(mc == "400", "max_connections %r" % mc)
    log("selftest: PostgreSQL cluster, databases, psql")

    # Ports: distinct and locked.
    locks = [PortLock() for _ in range(5)]
    ports = {lk.port for lk in locks}
    check(len(ports) == 5, "ports not distinct: %r" % ports)
    fd = os.open(os.path.join(PORT_LOCK_DIR, "%d.lock" % locks[0].port), os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        raise TestFailure("port lock not held")
    except OSError as e:
        check(e.errno in (errno.EAGAIN, errno.EWOULDBLOCK), "flock: %s" % e)
    finally:
        os.close(fd)
    for lk in locks:
        lk.release()
    log("selftest: port locks")

    # wait_for: returns the value, times out with TestFailure.
    n = [0]

    def soon():
        n[0] += 1
        return n[0] >= 3 and "done"
    check(wait_for(soon, 5, "counter", interval=0.01) == "done", "wait_for value")
    try:
        wait_for(lambda: False, 0.3, "never", interval=0.1)
        raise AssertionError("wait_for did not time out")
    except TestFailure as e:
        check("never" in str(e), "timeout message")
    log("selftest: wait_for")

    # Config writing, with a fake daemon that is just `sleep`: process
    # control and the sanitizer log check.
    check(os.path.exists(h.certs.ca), "CA made")
    s = Site.__new__(Site)
    s.h, s.code, s.parent, s.dbname = h, "X01", None, "site_cas"
    s.dir = h.path("sites", "X01")
    s.state_dir = os.path.join(s.dir, "state")
    s.conf = os.path.join(s.dir, "sitesync.conf")
    s.control = os.path.join(s.dir, "control.sock")
    s.sync_log = os.path.join(s.dir, "sync.log")
    s.logfile = os.path.join(s.dir, "sitesyncd.log")
    s.upstream, s.extra, s.portlock, s.port = "file:///x.xml", {}, None, None
    s.proc, s.unclean, s.starts = None, [], 0
    os.makedirs(s.state_dir)
    h.certs.site("X01")
    s.write_config()
    conf = open(s.conf).read()
    for needle in ("code = X01", "[database]", "conninfo = host=" + h.pg.sockdir,
                   "[tls]", "X01.key", "[upstream]", "heartbeat_timeout = 3"):
        check(needle in conf, "config lacks %r:\n%s" % (needle, conf))
    check("[listen]" not in conf and "[parent]" not in conf, "leaf/top config")
    check(s.catalog_state() == (7, "00ff", 3), "catalog_state helper")
    h.sites["X01"] = s
    real = h.sitesyncd
    wrapper = h.path("fake-daemon.sh")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\necho fake daemon $$ >&2\n"
                "trap 'echo stopping >&2; exit 0' TERM\n"
                "while :; do sleep 0.1; done\n")
    os.chmod(wrapper, 0o755)
    h.sitesyncd = wrapper
    s.start(wait=False)
    wait_for(lambda: "fake daemon" in s.log_text(), 10, "fake daemon output")
    check(os.path.exists(h.path("pids", "X01")), "pid recorded")
    s.stop()
    check(not s.unclean, "clean stop: %r" % s.unclean)
    s.start(wait=False)
    s.kill()
    check(not os.path.exists(h.path("pids", "X01")), "pid forgotten")
    # A daemon dying behind the test's back fails the next wait at once.
    s.start(wait=False)
    os.kill(s.proc.pid, signal.SIGKILL)
    t0 = time.monotonic()
    try:
        wait_for(lambda: False, 30, "anything")
        raise AssertionError("a dead daemon went unnoticed")
    except TestFailure as e:
        check("X01 exited unexpectedly" in str(e), "crash report: %s" % e)
    check(time.monotonic() - t0 < 10, "crash noticed late")
    check(s.unclean == ["exited unexpectedly with status -9"], repr(s.unclean))
    s.unclean.clear()
    with open(s.logfile, "a") as f:
        f.write("==1==ERROR: AddressSanitizer: heap-use-after-free\n")
    log("selftest: a fake sanitizer report follows, on purpose")
    h.check_logs()
    check(any("AddressSanitizer" in x for x in h.failures),
          "sanitizer text not detected")
    h.failures.clear()
    with open(s.logfile, "w") as f:
        f.write("clean\n")
    h.sitesyncd = real
    log("selftest: config, process control, log checks")

    _selftest_tls(h)


def _selftest_teardown():
    """The cluster and temp dir must be gone after teardown."""
    holder = {}

    def body(h):
        holder["root"] = h.root
        holder["pid_file"] = os.path.join(h.pg.data, "postmaster.pid")
        with open(holder["pid_file"]) as f:
            holder["pid"] = int(f.readline())
        _selftest(h)
    try:
        with Harness("selftest", need_daemon=False) as h:
            body(h)
    except Skip as e:
        log("SKIP harness selftest: %s" % e)
        return SKIP
    pid = holder["pid"]

    def gone_pid(p):
        try:
            os.kill(p, 0)
            return False
        except ProcessLookupError:
            return True
    wait_for(lambda: gone_pid(pid), 10, "postmaster %d to exit" % pid)
    if os.environ.get("SS_KEEP_TMP") != "1":
        check(not os.path.exists(holder["root"]), "temp dir left behind")
    log("selftest: teardown stopped PostgreSQL and removed the temp dir")

    # The reaper: a harness whose process dies by SIGKILL leaks nothing.
    code = ("import sys, os, time; sys.path.insert(0, %r); import harness;"
            "h = harness.Harness('reaper', need_daemon=False).__enter__();"
            "print(h.root, open(os.path.join(h.pg.data, 'postmaster.pid'))"
            ".readline().strip(), flush=True); time.sleep(600)"
            % os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stdin=subprocess.DEVNULL, text=True,
                             env=dict(os.environ, SS_KEEP_TMP="0"))
    line = child.stdout.readline().split()
    check(len(line) == 2, "reaper child output %r" % line)
    root, pid = line[0], int(line[1])
    child.kill()
    child.wait()
    child.stdout.close()

    def gone():
        try:
            os.kill(pid, 0)
            return False
        except ProcessLookupError:
            return not os.path.exists(root)
    wait_for(gone, 60, "the reaper to stop PostgreSQL and remove %s" % root)
    log("selftest: reaper cleans up after a SIGKILLed test")

    # SIGTERM (meson's timeout) unwinds through teardown in the test itself.
    code = ("import sys, os, time; sys.path.insert(0, %r); import harness;"
            "harness.main(lambda h: (print(h.root, open(os.path.join(h.pg.data,"
            " 'postmaster.pid')).readline().strip(), flush=True),"
            " time.sleep(600)), 'sigterm', need_daemon=False)"
            % os.path.dirname(os.path.abspath(__file__)))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                             text=True, env=dict(os.environ, SS_KEEP_TMP="0"))
    line = child.stdout.readline().split()
    check(len(line) == 2, "sigterm child output %r" % line)
    root, pid = line[0], int(line[1])
    child.send_signal(signal.SIGTERM)
    try:
        _, err = child.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        child.kill()
        raise TestFailure("test process ignored SIGTERM")
    check(child.returncode == 1, "SIGTERMed test exit status %r" % child.returncode)
    check("terminated by SIGTERM" in err, "no SIGTERM report: %s" % err)
    check(not os.path.exists(root), "SIGTERMed test left %s" % root)
    wait_for(lambda: gone_pid(pid), 10, "postmaster %d to exit" % pid)
    log("selftest: SIGTERM tears down PostgreSQL and the temp dir")
    return 0


if __name__ == "__main__":
    try:
        rc = _selftest_teardown()
    except TestFailure as e:
        log("FAIL harness selftest: %s" % e)
        rc = 1
    except Exception:       # noqa: BLE001
        traceback.print_exc()
        rc = 1
    if rc == 0:
        log("PASS harness selftest")
    sys.exit(rc)
