#!/usr/bin/env python3
"""`meson install` installs what the installed files point at.

Usage: check_install.py SOURCE_ROOT BUILD_ROOT

Installs the build into a temporary DESTDIR, then checks:
  - the man pages, sitesync-certs(1) included, and every man page the
    systemd unit's Documentation= names;
  - every PREFIX/share/doc/sitesync/NAME the man pages name, and the
    documents sitesync.conf(5) lists there;
  - lib/sysusers.d/sitesync.conf creates the "sitesync" user the unit runs
    as, lib/tmpfiles.d/sitesync.conf makes /etc/sitesync.
Exit 0 pass, 1 fail, 77 skip.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile


def main():
    src, build = sys.argv[1], sys.argv[2]
    if not shutil.which("meson"):
        print("SKIP: meson not found")
        return 77
    dest = tempfile.mkdtemp(prefix="ss-install-")
    fails = []
    try:
        p = subprocess.run(["meson", "install", "-C", build, "--no-rebuild", "--quiet",
                            "--destdir", dest], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, timeout=120)
        if p.returncode != 0:
            print("meson install failed:\n%s%s" % (p.stdout, p.stderr))
            return 1
        units = glob.glob(dest + "/**/systemd/system/sitesyncd.service", recursive=True)
        if len(units) != 1:
            print("no sitesyncd.service installed")
            return 1
        # DESTDIR/PREFIX: the unit sits in PREFIX/lib/systemd/system.
        prefix = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(units[0]))))
        share = os.path.join(prefix, "share")
        unit = open(units[0]).read()
        for name, sec in re.findall(r"man:([\w.-]+)\((\d)\)", unit):
            if not os.path.exists(os.path.join(share, "man", "man" + sec, name + "." + sec)):
                fails.append("unit Documentation= man:%s(%s) not installed" % (name, sec))
        for name, sec in (("sitesync", 1), ("sitesync-certs", 1), ("sitesyncd", 8),
                          ("sitesync.conf", 5)):
            if not os.path.exists(os.path.join(share, "man", "man%d" % sec, "%s.%d" % (name, sec))):
                fails.append("man page %s(%d) not installed" % (name, sec))
        doc = os.path.join(share, "doc", "sitesync")
        for man in glob.glob(os.path.join(src, "deploy", "man", "*.[158]")):
            text = open(man).read().replace("\\-", "-")
            for ref in re.findall(r"PREFIX/share/doc/sitesync/([\w./-]+)", text):
                if not os.path.exists(os.path.join(doc, ref)):
                    fails.append("%s names PREFIX/share/doc/sitesync/%s, not installed"
                                 % (os.path.basename(man), ref))
        conf5 = open(os.path.join(src, "deploy", "man", "sitesync.conf.5")).read()
        for ref in re.findall(r"\b([\w]+\.md)\b", conf5):
            if not os.path.exists(os.path.join(doc, ref)):
                fails.append("sitesync.conf(5) names %s, not installed in %s" % (ref, doc))
        users = os.path.join(prefix, "lib", "sysusers.d", "sitesync.conf")
        if not os.path.exists(users) or not re.search(r"^u sitesync\b", open(users).read(), re.M):
            fails.append("lib/sysusers.d/sitesync.conf does not create the sitesync user")
        if "User=sitesync" not in unit:
            fails.append("the unit does not run as sitesync")
        tmpf = os.path.join(prefix, "lib", "tmpfiles.d", "sitesync.conf")
        if not os.path.exists(tmpf) or "/etc/sitesync" not in open(tmpf).read():
            fails.append("lib/tmpfiles.d/sitesync.conf does not make /etc/sitesync")
        if not glob.glob(os.path.join(prefix, "bin", "sitesync-certs")):
            fails.append("sitesync-certs not installed")
    finally:
        shutil.rmtree(dest, ignore_errors=True)
    for f in fails:
        print("FAIL:", f)
    if not fails:
        print("install: man pages, docs, sysusers.d and tmpfiles.d all in place")
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
