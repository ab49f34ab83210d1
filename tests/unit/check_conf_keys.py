#!/usr/bin/env python3
"""Every configuration key is in every example config and in sitesync.conf(5).

Usage: check_conf_keys.py SOURCE_ROOT [SITESYNCD]

Reads the key table of common/conf.c (the K(section, key, type, field,
default, reloadable) lines) and checks, for each deploy/*.conf.example:
  - it is valid INI (Python's configparser, ';' comments);
  - every key of the table appears in its section, set or commented out
    (";key = ..."), each exactly once, with a comment line above it;
  - every key that is set is known, and a commented-out key with a default
    shows that default;
  - the examples say what they claim: the top site has no [parent]
    address, the leaf no [listen], the disconnected site mode =
    disconnected, the mid-level site both a parent and a listen address.
It also checks that deploy/man/sitesync.conf.5 documents every key with its
default. With SITESYNCD, each example (its /etc/sitesync/ paths pointed at
certificates made with deploy/sitesync-certs and an Ed25519 key pair made
with openssl, in a temp dir) must pass
`sitesyncd -c FILE --check-config`.
Exit 0 pass, 1 fail.
"""

import configparser
import os
import re
import shutil
import subprocess
import sys
import tempfile

K_RE = re.compile(r'^\s*K\(\s*"([a-z_]+)"\s*,\s*"([a-z_]+)"\s*,\s*(CF_\w+)\s*,'
                  r'\s*\w+\s*,\s*(NULL|"[^"]*")\s*,\s*(true|false)\s*\)', re.M)
KEY_LINE = re.compile(r'^(;?)\s*([a-z_]+)\s*=\s*(.*?)\s*$')
SECTION_LINE = re.compile(r'^\[([a-z_]+)\]\s*$')
EXAMPLES = ("top", "mid", "leaf", "disconnected")

failures = []


def fail(msg):
    failures.append(msg)
    print("FAIL: " + msg)


def conf_keys(src):
    text = open(os.path.join(src, "common", "conf.c")).read()
    keys = []
    for sec, key, typ, default, rl in K_RE.findall(text):
        keys.append((sec, key, typ, None if default == "NULL" else default.strip('"')))
    # A K( line the pattern missed would silently go unchecked.
    n_lines = len(re.findall(r'^\s*K\(\s*"', text, re.M))
    if n_lines != len(keys) or not keys:
        fail("common/conf.c: parsed %d of %d K(...) lines" % (len(keys), n_lines))
    return keys


def scan(path):
    """{(section, key): [(commented, value, has_comment_above)]}."""
    found = {}
    section = None
    prev = ""
    for line in open(path):
        line = line.rstrip("\n")
        m = SECTION_LINE.match(line)
        if m:
            section = m.group(1)
        else:
            m = KEY_LINE.match(line)
            if m and section:
                found.setdefault((section, m.group(2)), []).append(
                    (m.group(1) == ";", m.group(3), prev.startswith("; ")))
        prev = line
    return found


def check_example(path, keys):
    name = os.path.basename(path)
    cp = configparser.ConfigParser(comment_prefixes=(";",),
                                   inline_comment_prefixes=None,
                                   interpolation=None, strict=True)
    try:
        cp.read_string(open(path).read(), source=path)
    except configparser.Error as e:
        fail("%s: not valid INI: %s" % (name, e))
        return None
    known = {(s, k): (t, d) for s, k, t, d in keys}
    found = scan(path)
    for (sec, key), (typ, default) in known.items():
        occ = found.get((sec, key), [])
        if len(occ) != 1:
            fail("%s: [%s] %s appears %d times (want exactly once)"
                 % (name, sec, key, len(occ)))
            continue
        commented, value, doc = occ[0]
        if not doc:
            fail("%s: [%s] %s has no comment line above it" % (name, sec, key))
        if commented and default is not None and value != default:
            fail("%s: ;%s = %s shows %r, the default is %r"
                 % (name, key, value, value, default))
    for sec in cp.sections():
        for key in cp[sec]:
            if (sec, key) not in known:
                fail("%s: unknown key [%s] %s" % (name, sec, key))
    return cp


def check_roles(examples):
    def has(cp, sec, key):
        return cp.has_option(sec, key)
    top, mid, leaf, disc = (examples.get(n) for n in EXAMPLES)
    if top is not None:
        if has(top, "parent", "address") or not has(top, "upstream", "url") \
                or not has(top, "listen", "address"):
            fail("top.conf.example: a top site has [upstream] url, [listen], no [parent]")
    if mid is not None:
        if not (has(mid, "parent", "address") and has(mid, "listen", "address")) \
                or has(mid, "upstream", "url"):
            fail("mid.conf.example: a mid-level site has [parent] and [listen], no upstream")
    if leaf is not None:
        if not has(leaf, "parent", "address") or has(leaf, "listen", "address"):
            fail("leaf.conf.example: a leaf has [parent] address and no [listen]")
    if disc is not None:
        if disc.get("parent", "mode", fallback="") != "disconnected" \
                or has(disc, "parent", "address"):
            fail("disconnected.conf.example: want mode = disconnected, no address")


def check_man(src, keys):
    path = os.path.join(src, "deploy", "man", "sitesync.conf.5")
    try:
        text = open(path).read()
    except OSError as e:
        fail("sitesync.conf.5: %s" % e)
        return
    # Sections as .SH/.SS "[name]", keys as .B / .TP "key"; match loosely.
    plain = re.sub(r"\\f[BIRP]|\\-|\\&", lambda m: "-" if m.group() == "\\-" else "", text)
    current = None
    seen = set()
    for line in plain.splitlines():
        m = re.match(r'^\.S[HS]\s+"?\[([a-z_]+)\]', line)
        if m:
            current = m.group(1)
            continue
        m = re.match(r'^\.B\s+([a-z_]+)\s*$', line) or re.match(r'^([a-z_]+)\s+=', line)
        if m and current:
            seen.add((current, m.group(1)))
    for sec, key, typ, default in keys:
        if (sec, key) not in seen:
            fail("sitesync.conf.5: [%s] %s not documented" % (sec, key))
        elif default is not None and default not in plain:
            fail("sitesync.conf.5: default %r of [%s] %s not mentioned"
                 % (default, sec, key))


def check_daemon(src, sitesyncd, paths):
    tmp = tempfile.mkdtemp(prefix="ss-confkeys-")
    try:
        certs = os.path.join(tmp, "certs")
        tool = os.path.join(src, "deploy", "sitesync-certs")
        subprocess.run([tool, "ca", certs], check=True, stdout=subprocess.DEVNULL,
                       stdin=subprocess.DEVNULL)
        # [trust]: an Ed25519 pair under the names the examples use.
        for argv in (["genpkey", "-algorithm", "ed25519", "-out", "manifest.key"],
                     ["pkey", "-in", "manifest.key", "-pubout", "-out", "manifest.pub"]):
            subprocess.run(["openssl"] + argv, check=True, cwd=certs,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           stdin=subprocess.DEVNULL)
        for path in paths:
            name = os.path.basename(path)
            text = open(path).read()
            code = re.search(r"^code = ([A-Z0-9]{3})$", text, re.M).group(1)
            if not os.path.exists(os.path.join(certs, code + ".pem")):
                subprocess.run([tool, "site", certs, code], check=True,
                               stdout=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
            # Every file the examples name in /etc/sitesync/ now lives in certs.
            text = re.sub(r"^([a-z_]+) = /etc/sitesync/", r"\1 = %s/" % certs,
                          text, flags=re.M)
            conf = os.path.join(tmp, name)
            with open(conf, "w") as f:
                f.write(text)
            p = subprocess.run([sitesyncd, "-c", conf, "--check-config"],
                               stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, timeout=30)
            if p.returncode != 0:
                fail("%s: sitesyncd --check-config exited %d: %s"
                     % (name, p.returncode, p.stdout.strip()))
            else:
                print("ok: %s passes sitesyncd --check-config" % name)
    except (subprocess.CalledProcessError, OSError, AttributeError) as e:
        fail("--check-config setup: %s" % e)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) not in (2, 3):
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 1
    src = sys.argv[1]
    keys = conf_keys(src)
    print("%d keys in common/conf.c" % len(keys))
    examples = {}
    paths = []
    for n in EXAMPLES:
        path = os.path.join(src, "deploy", n + ".conf.example")
        if not os.path.exists(path):
            fail("%s is missing" % path)
            continue
        paths.append(path)
        cp = check_example(path, keys)
        if cp is not None:
            examples[n] = cp
            print("ok: %s lists every key" % os.path.basename(path))
    check_roles(examples)
    check_man(src, keys)
    if len(sys.argv) == 3 and shutil.which("openssl"):
        check_daemon(src, sys.argv[2], paths)
    if failures:
        print("%d problem(s)" % len(failures))
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
