#!/usr/bin/env python3
"""Generate realistic third-party software update catalogs for tests and
benchmarks (the SystemsManagementCatalog format WSUS and Configuration
Manager import, DESIGN.md section 2).

Everything is a pure function of (seed, entry index, entry version), so two
runs with the same arguments write identical bytes, and round K is round 1
after K-1 rounds of churn: about 1% of the entries change, 0.5% disappear,
0.5% new ones appear (often superseding existing ones). Output is streamed,
so a million entries need little memory.

  gen_catalog.py --entries N [--round K] [--seed S] [--out FILE]
                 [--encoding utf-8|utf-16] [--bom] [--crlf] [--sdp-dir DIR]
"""
import argparse
import base64
import hashlib
import os
import random
import sys
import uuid
from array import array
from xml.sax.saxutils import escape, quoteattr

NS = {
    "smc": "http://schemas.microsoft.com/sms/2005/04/CorporatePublishing/SystemsManagementCatalog.xsd",
    "sdp": "http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/SoftwareDistributionPackage.xsd",
    "bar": "http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/BaseApplicabilityRules.xsd",
    "lar": "http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/LogicalApplicabilityRules.xsd",
    "cmd": "http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/Installers/CommandLineInstallation.xsd",
    "msiar": "http://schemas.microsoft.com/wsus/2005/04/CorporatePublishing/MsiApplicabilityRules.xsd",
    "xsi": "http://www.w3.org/2001/XMLSchema-instance",
}

CLASSIFICATIONS = [
    # (WSUS classification id, weight, is security)
    ("0fa1201d-4330-4fa8-8ae9-b877473b6441", 45, True),   # Security Updates
    ("e6cf1350-c01b-414d-a61f-263d14d133b4", 15, False),  # Critical Updates
    ("cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83", 35, False),  # Updates
    ("b54e7d24-7add-428f-8b75-90a396fa584f", 5, False),   # Feature Packs
]
SEVERITIES = ["Critical", "Important", "Moderate", "Low"]

VENDORS = [
    ("Contoso Ltd", "contoso", [
        ("Contoso Browser", "browser", "exe"),
        ("Contoso Mail", "mail", "msi"),
        ("Contoso PDF Reader", "pdfreader", "msp")]),
    ("Fabrikam Inc", "fabrikam", [
        ("Fabrikam Office Suite", "office", "msi"),
        ("Fabrikam Java Runtime", "jre", "exe")]),
    ("Northwind Traders", "northwind", [
        ("Northwind VPN Client", "vpn", "exe"),
        ("Northwind Endpoint Agent", "agent", "msi"),
        ("Northwind Backup", "backup", "exe")]),
    ("Tailspin Toys", "tailspin", [
        ("Tailspin Media Player", "player", "exe"),
        ("Tailspin Codec Pack", "codecs", "msi")]),
    ("Adatum Corporation", "adatum", [
        ("Adatum BIOS", "bios", "exe"),
        ("Adatum Audio Driver", "audio", "exe"),
        ("Adatum Graphics Driver", "graphics", "exe"),
        ("Adatum Dock Firmware", "dock", "exe")]),
]

WORDS = ("addresses vulnerabilities in the rendering engine that could allow "
         "remote code execution if a user opens a specially crafted file "
         "improves stability and performance when many documents are open "
         "fixes an issue where the application stops responding after resume "
         "from sleep updates bundled libraries to their latest versions and "
         "hardens the handling of untrusted input in network components "
         "administrators should deploy this update to all managed devices").split()

MASK64 = (1 << 64) - 1


def mix(*vals):
    """Deterministic 64-bit hash of small integers (splitmix64 chain)."""
    h = 0x9E3779B97F4A7C15
    for v in vals:
        h = (h ^ (v & MASK64)) & MASK64
        h = (h + 0x9E3779B97F4A7C15) & MASK64
        z = h
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
        h = z ^ (z >> 31)
    return h


class Rng:
    """Deterministic stream of numbers for one entry: Mersenne Twister
    output for an integer seed is the same on every Python 3."""

    def __init__(self, *key):
        self.r = random.Random(mix(*key))

    def below(self, k):
        return self.r.getrandbits(32) % k

    def chance(self, pct):
        return self.r.getrandbits(32) % 1000 < pct * 10


def entry_uuid(seed, idx):
    d = hashlib.sha1(b"sitesync-gen:%d:%d" % (seed, idx)).digest()
    return str(uuid.UUID(bytes=d[:16], version=5))


def external_uuid(seed, k):
    d = hashlib.sha1(b"sitesync-external:%d:%d" % (seed, k)).digest()
    return str(uuid.UUID(bytes=d[:16], version=5))


class State:
    """Which entries exist at a round, and how often each has changed."""

    def __init__(self, n, seed, rnd):
        self.seed = seed
        self.version = array("H", bytes(2 * n))
        self.alive = bytearray(b"\x01") * n
        self.born = array("H", bytes(2 * n))  # round an entry appeared in
        for r in range(2, rnd + 1):
            self.churn(r)

    def churn(self, r):
        seed, total = self.seed, len(self.alive)
        live = 0
        for i in range(total):
            if not self.alive[i]:
                continue
            live += 1
            h = mix(seed, 0x5EED, r, i) % 1000
            if h < 5:
                self.alive[i] = 0
            elif h < 15:
                self.version[i] += 1
        for _ in range(max(1, live * 5 // 1000)):
            self.alive.append(1)
            self.version.append(0)
            self.born.append(r)


def entry_xml(seed, idx, ver, born, total, pkg_tag, nsdecl):
    """One package as XML text (without trailing newline)."""
    rng = Rng(seed, idx)          # stable across versions
    vrng = Rng(seed, idx, ver)    # changes with each version
    vname, vkey, products = VENDORS[idx % len(VENDORS)]
    prod_name, prod_key, kind = products[rng.below(len(products))]
    arch = ("x64", "x86", "arm64")[rng.below(3)]
    major = 60 + rng.below(70)
    build = "%d.0.%d.%d" % (major, 1000 + rng.below(9000), ver * 7 + rng.below(200))

    w = rng.below(100)
    for cls, weight, security in CLASSIFICATIONS:
        if w < weight:
            break
        w -= weight
    kindword = "security update" if security else (
        "feature pack" if cls.startswith("b54e") else "update")
    title = "%s %s (%s) %s" % (prod_name, build, arch, kindword)

    words = []
    k = vrng.below(len(WORDS))
    target, length = 200 + vrng.below(250), 0
    while length < target:
        words.append(WORDS[k % len(WORDS)])
        length += len(words[-1]) + 1
        k += 1 + vrng.below(3)
    desc = "%s %s %s." % (prod_name, build, " ".join(words))

    day = idx % 28 + 1
    month = (idx // 28) % 12 + 1
    year = 2019 + (idx // 336) % 6
    hh, mm, ss = rng.below(24), rng.below(60), rng.below(60)
    tz = ("", "Z", "+02:00", "-05:00")[rng.below(4)]
    created = "%04d-%02d-%02dT%02d:%02d:%02d%s" % (year, month, day, hh, mm, ss, tz)

    uid = entry_uuid(seed, idx)
    out = []
    a = out.append
    a("<%s%s>" % (pkg_tag, nsdecl))
    a('<sdp:Properties PackageID="%s" CreationDate="%s" VendorName=%s '
      'PublicationState="Published" PackageType="Update">'
      % (uid, created, quoteattr(vname)))
    a("<sdp:MoreInfoUrl>https://support.%s.example/kb/%d</sdp:MoreInfoUrl>" % (vkey, 100000 + idx))
    a("<sdp:SupportUrl>https://support.%s.example/</sdp:SupportUrl>" % vkey)
    a("<sdp:ProductName>%s</sdp:ProductName>" % escape(prod_name))
    for extra in range(rng.below(3)):
        other = products[(products.index((prod_name, prod_key, kind)) + 1 + extra) % len(products)][0]
        if other != prod_name:
            a("<sdp:ProductName>%s</sdp:ProductName>" % escape(other))
    a("</sdp:Properties>")

    langs = ["en"]
    p = rng.below(100)
    if p >= 80:
        langs.append("de")
    if p >= 95:
        langs.append("fr")
    for lang in langs:
        t = title if lang == "en" else "%s [%s]" % (title, lang)
        a("<sdp:LocalizedProperties><sdp:Language>%s</sdp:Language>"
          "<sdp:Title>%s</sdp:Title><sdp:Description>%s</sdp:Description>"
          "</sdp:LocalizedProperties>" % (lang, escape(t), escape(desc)))

    kb = 4000000 + idx
    sev = ' MsrcSeverity="%s"' % SEVERITIES[rng.below(4)] if security else ""
    a('<sdp:UpdateSpecificData%s UpdateClassification="%s">' % (sev, cls))
    a("<sdp:KBArticleID>%d</sdp:KBArticleID>" % kb)
    if security:
        a("<sdp:SecurityBulletinID>%s-SB-%d-%03d</sdp:SecurityBulletinID>"
          % (vkey.upper(), year, idx % 1000))
        for c in range(1 + rng.below(3)):
            a("<sdp:CveID>CVE-%d-%d</sdp:CveID>" % (year, 10000 + (idx * 3 + c) % 90000))
    a("</sdp:UpdateSpecificData>")

    a('<sdp:IsInstallable><lar:And><bar:WindowsVersion Comparison="GreaterThanOrEqualTo" '
      'MajorVersion="10" MinorVersion="0"/><bar:Processor Architecture="%d"/>'
      "</lar:And></sdp:IsInstallable>" % (9 if arch == "x64" else (0 if arch == "x86" else 12)))

    sup = []
    if idx >= len(VENDORS) and rng.chance(30):
        sup.append(entry_uuid(seed, idx - len(VENDORS)))
    if rng.chance(5):
        sup.append(external_uuid(seed, idx))    # outside the catalog
    if ver > 0 and vrng.chance(25) and idx >= 2 * len(VENDORS):
        sup.append(entry_uuid(seed, idx - 2 * len(VENDORS)))
    if born > 1 and total > 0:
        # New entries tend to replace something already published.
        sup.append(entry_uuid(seed, rng.below(max(1, idx))))
    if sup:
        a("<sdp:SupersededPackages>%s</sdp:SupersededPackages>"
          % "".join("<sdp:PackageID>%s</sdp:PackageID>" % s for s in sup))
    if idx > 10 and rng.chance(8):
        a("<sdp:PrerequisitePackages><sdp:Or><sdp:PackageID>%s</sdp:PackageID>"
          "<sdp:PackageID>%s</sdp:PackageID></sdp:Or></sdp:PrerequisitePackages>"
          % (entry_uuid(seed, idx - 3), entry_uuid(seed, idx - 7)))
    if idx > 20 and rng.chance(2):
        a("<sdp:BundledPackages><sdp:PackageID>%s</sdp:PackageID></sdp:BundledPackages>"
          % entry_uuid(seed, idx - 11))

    a('<sdp:InstallableItem ID="%s">' % entry_uuid(seed + 1000003, idx))
    a('<sdp:ApplicabilityRules><sdp:IsInstalled><bar:FileVersion Csidl="38" '
      'Path="%s\\%s.exe" Comparison="GreaterThanOrEqualTo" Version="%s"/>'
      "</sdp:IsInstalled><sdp:IsInstallable><bar:RegKeyExists Key=\"HKEY_LOCAL_MACHINE\" "
      'Subkey="SOFTWARE\\%s\\%s"/></sdp:IsInstallable></sdp:ApplicabilityRules>'
      % (escape(prod_name), prod_key, build, escape(vname), escape(prod_name)))
    a('<sdp:InstallProperties CanRequestUserInput="false" Impact="Normal" '
      'RequiresNetworkConnectivity="false" RebootBehavior="CanRequestReboot"/>')
    a('<cmd:CommandLineInstallerData Program="%s-%s.%s" Arguments="/quiet /norestart" '
      'DefaultResult="Failed" RebootByDefault="false"><cmd:ReturnCode Code="0" '
      'Result="Succeeded" Reboot="false"/><cmd:ReturnCode Code="3010" Result="Succeeded" '
      'Reboot="true"/></cmd:CommandLineInstallerData>' % (prod_key, build, kind))
    for f in range(1 + rng.below(3)):
        digest = base64.b64encode(hashlib.sha1(
            b"file:%d:%d:%d:%d" % (seed, idx, ver, f)).digest()).decode()
        fname = "%s-%s-%s%s.%s" % (prod_key, build, arch, "" if f == 0 else "-part%d" % f, kind)
        size = 100000 + mix(seed, idx, ver, f) % 400000000
        mod = "%04d-%02d-%02dT%02d:%02d:%02d" % (year, month, day, hh, (mm + f) % 60, ss)
        a('<sdp:OriginFile Digest="%s" FileName="%s" Size="%d" Modified="%s" '
          'OriginUri="https://downloads.%s.example/%s/%s"/>'
          % (digest, fname, size, mod, vkey, prod_key, fname))
    a("</sdp:InstallableItem>")
    a("</%s>" % pkg_tag)
    return "".join(out)


class Writer:
    """Buffered, byte-counting text output in the chosen encoding."""

    def __init__(self, raw, encoding, bom, crlf):
        self.raw = raw
        self.enc = "utf-16-le" if encoding == "utf-16" else "utf-8"
        self.crlf = crlf
        self.buf = []
        self.size = 0
        self.bytes = 0
        if bom:
            self._emit(b"\xff\xfe" if encoding == "utf-16" else b"\xef\xbb\xbf")

    def _emit(self, b):
        self.raw.write(b)
        self.bytes += len(b)

    def write(self, s):
        if self.crlf:
            s = s.replace("\n", "\r\n")
        self.buf.append(s)
        self.size += len(s)
        if self.size > 1 << 20:
            self.flush()

    def flush(self):
        if self.buf:
            self._emit("".join(self.buf).encode(self.enc))
            self.buf = []
            self.size = 0
        self.raw.flush()


def ns_attrs(names):
    return "".join(' xmlns:%s="%s"' % (n, NS[n]) for n in names)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--entries", type=int, required=True)
    ap.add_argument("--round", type=int, default=1)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--out")
    ap.add_argument("--encoding", choices=("utf-8", "utf-16"), default="utf-8")
    ap.add_argument("--bom", action="store_true")
    ap.add_argument("--crlf", action="store_true")
    ap.add_argument("--sdp-dir")
    args = ap.parse_args()
    if args.entries < 0 or args.round < 1:
        ap.error("--entries must be >= 0 and --round >= 1")

    st = State(args.entries, args.seed, args.round)
    decl = '<?xml version="1.0" encoding="%s"?>\n' % args.encoding
    count = 0
    total_bytes = 0

    if args.sdp_dir:
        os.makedirs(args.sdp_dir, exist_ok=True)
        nsdecl = ns_attrs(("bar", "cmd", "lar", "msiar", "xsi")) + ' SchemaVersion="1.2"' + ns_attrs(("sdp",))
        for i in range(len(st.alive)):
            if not st.alive[i]:
                continue
            path = os.path.join(args.sdp_dir, entry_uuid(args.seed, i) + ".sdp")
            with open(path, "wb") as raw:
                w = Writer(raw, args.encoding, args.bom, args.crlf)
                w.write(decl)
                w.write(entry_xml(args.seed, i, st.version[i], st.born[i], len(st.alive),
                                  "sdp:SoftwareDistributionPackage", nsdecl) + "\n")
                w.flush()
                total_bytes += w.bytes
            count += 1
    else:
        raw = open(args.out, "wb") if args.out else sys.stdout.buffer
        w = Writer(raw, args.encoding, args.bom, args.crlf)
        w.write(decl)
        w.write("<smc:SystemsManagementCatalog%s>\n"
                % ns_attrs(("smc", "sdp", "bar", "lar", "cmd", "msiar", "xsi")))
        for i in range(len(st.alive)):
            if not st.alive[i]:
                continue
            w.write(entry_xml(args.seed, i, st.version[i], st.born[i], len(st.alive),
                              "smc:SoftwareDistributionPackage", "") + "\n")
            count += 1
        w.write("</smc:SystemsManagementCatalog>\n")
        w.flush()
        total_bytes = w.bytes
        if args.out:
            raw.close()

    print("gen_catalog: %d entries, %d bytes (round %d, seed %d)"
          % (count, total_bytes, args.round, args.seed), file=sys.stderr)


if __name__ == "__main__":
    main()
