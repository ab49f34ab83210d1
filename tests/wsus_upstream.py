#!/usr/bin/env python3
"""A loopback WSUS upstream for the tests: it speaks the part of [MS-WSUSSS]
sitesync's client uses (GetAuthConfig, DSS GetAuthorizationCookie,
GetCookie, GetConfigData, GetRevisionIdList, GetUpdateData) and answers from
the real exchanges in tests/data/wsusss (README there).

The recordings were shortened, so this server also synthesises what a real
server would hold, each in the shape of a recorded document:

  * the members of the recorded bundles (KB2267602 names 124, ccb78947 4)
    that were not recorded, shaped like the recorded leaf 266f6222 (one file,
    SHA-1 + SHA-256, a download URL in fileUrls);
  * the category documents the recording lacks: the product "Microsoft
    Defender Antivirus" (8c3fcc84-...) and the classification "Definition
    Updates" (e0789628-...), shaped like the recorded company category
    56309036 ("Microsoft"), plus the other listed categories and the
    detectoids the updates name as prerequisites;
  * documents for the 30 recorded update ids of the Defender x Definition
    Updates list, shaped like the recorded leaf.

Compressed blobs are made as real servers make them: base64 of a Cabinet
whose one member `blob` is the update XML in UTF-16LE without BOM or
declaration. The recorded blobs are LZX; no LZX writer is at hand on this
machine, so synthetic ones are MSZIP cabinets written by `gcab -z` (MSZIP is
also a compression WSUS cabinets use, and libmspack reads both). The volume
mode writes the same MSZIP cabinets in Python (mszip_blob, checked against
gcab's reader at start): a gcab process per document is too slow for
25,000 documents.

Knobs for the tests (attributes of WsusUpstream, safe to set while serving):
  invalid_cookie     next N protected requests answer the recorded InvalidCookie
  fail_ids           a GetUpdateData batch naming one of these ids answers the
                     recorded InternalServerError (HTTP 500) for the whole batch
  refuse_anchors     anchors answered with the recorded InvalidParameters
  transient          next N requests answer HTTP 503 without a SOAP body
  service_url        GetAuthConfig names this authorization service URL
  data_ids           every id asked for by GetUpdateData, in order (a list)
  bump(ids)          give these updates a new revision (a changed upstream)
  require(id, p)     revise update id to name update p as a prerequisite
  add_update(id, ..) a new listed update; drop_update(id) unlists it (its
                     document stays: an update no list names); relist(id)

Volume mode (WsusUpstream(volume=N) or `--volume N`): N generated revisions
over several products and classifications, compressed and uncompressed
blobs, bundles, supersedence chains and a few revisions of several MB.

Run alone: python3 tests/wsus_upstream.py --port 8530 [--volume 25000]
"""

import argparse
import base64
import hashlib
import os
import re
import subprocess
import sys
import tempfile
import threading
import uuid
import xml.etree.ElementTree as ET
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "wsusss")

NS = "http://www.microsoft.com/SoftwareDistribution"
DSS_NS = NS + "/Server/DssAuthWebService"
SOAP_HEAD = ('<?xml version="1.0" encoding="utf-8"?><soap:Envelope '
             'xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/" '
             'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
             'xmlns:xsd="http://www.w3.org/2001/XMLSchema"><soap:Body>')
SOAP_TAIL = '</soap:Body></soap:Envelope>'

DEFENDER = "8c3fcc84-7410-4a95-8b89-a166a0190486"
DEFINITIONS = "e0789628-ce08-4437-be74-2495b842f43b"
MICROSOFT = "56309036-4c77-4dd9-951a-99ee9c246a94"
KB2267602 = "a2fef9b0-7951-4c2c-a42b-9e351dd1c1fe"
LEAF = "266f6222-c89d-43f2-9f8a-69340271e677"
SMALL = "ccb78947-6453-4ecc-9de8-bc0305c98f2d"

# Classification names of the listed category ids (public WSUS ids).
CLASSIFICATIONS = {
    "e6cf1350-c01b-414d-a61f-263d14d133b4": "Critical Updates",
    "ebfc1fc5-71a4-4f7b-9aca-3b9a503104a0": "Drivers",
    "b54e7d24-7add-428f-8b75-90a396fa584f": "Feature Packs",
    "0fa1201d-4330-4fa8-8ae9-b877473b6441": "Security Updates",
    "68c5b0a3-d1a6-4553-ae49-01d3a7827828": "Service Packs",
    "b4832bd8-e735-4761-8daf-37f882276dab": "Tools",
    "28bc880e-0592-4cbf-8f95-c79b17911d5f": "Update Rollups",
    "cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83": "Updates",
    DEFINITIONS: "Definition Updates",
}


def rec(n, part="response.body"):
    with open(os.path.join(DATA, "%06d" % n, part), "rb") as f:
        return f.read().decode("utf-8")


def cab_blob(xml):
    """base64 of an MSZIP cabinet whose one member `blob` is xml in UTF-16LE."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "blob"), "wb") as f:
            f.write(xml.encode("utf-16-le"))
        subprocess.run(["gcab", "-c", "-n", "-z", os.path.join(d, "x.cab"), "blob"],
                       cwd=d, check=True, stdout=subprocess.DEVNULL)
        with open(os.path.join(d, "x.cab"), "rb") as f:
            return base64.b64encode(f.read()).decode("ascii")


def cab_checksum(data, seed):
    """The CFDATA checksum of [MS-CAB]: XOR of little-endian 32-bit words,
    the 1-3 trailing bytes taken most significant first."""
    import struct
    n = len(data) // 4
    csum = seed
    for (w,) in struct.iter_unpack("<I", data[:4 * n]):
        csum ^= w
    tail = data[4 * n:]
    ul = 0
    for b in tail:
        ul = (ul << 8) | b
    return csum ^ ul


def mszip_blob(xml):
    """cab_blob() without a process per document, for the volume mode: the
    same one-member MSZIP cabinet, written here (CFHEADER, one CFFOLDER,
    one CFFILE `blob`, CFDATA blocks of at most 32 KiB, each 'CK' + a raw
    deflate stream, with [MS-CAB] checksums). Checked against
    gcab's reader when the volume upstream starts."""
    import struct
    import zlib
    data = xml.encode("utf-16-le")
    blocks = []
    for i in range(0, max(len(data), 1), 32768):
        chunk = data[i:i + 32768]
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        comp = b"CK" + c.compress(chunk) + c.flush()
        sizes = struct.pack("<HH", len(comp), len(chunk))
        blocks.append(struct.pack("<I", cab_checksum(sizes, cab_checksum(comp, 0))) + sizes + comp)
    name = b"blob\0"
    hdr_len, folder_len, file_len = 36, 8, 16 + len(name)
    first_data = hdr_len + folder_len + file_len
    body = b"".join(blocks)
    total = first_data + len(body)
    header = struct.pack("<4sIIIIIBBHHHHH", b"MSCF", 0, total, 0, hdr_len + folder_len, 0,
                         3, 1, 1, 1, 0, 0x5e5e, 0)
    folder = struct.pack("<IHH", first_data, len(blocks), 1)          # typeCompress 1 = MSZIP
    cfile = struct.pack("<IIHHHH", len(data), 0, 0, 0x5a21, 0x6000, 0x20) + name
    return base64.b64encode(header + folder + cfile + body).decode("ascii")


def uncab_blob(b64):
    """The update XML of a compressed blob (for the tests' expectations)."""
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "x.cab"), "wb") as f:
            f.write(base64.b64decode(b64))
        subprocess.run(["gcab", "-x", "-C", d, os.path.join(d, "x.cab")], check=True,
                       stdout=subprocess.DEVNULL)
        with open(os.path.join(d, "blob"), "rb") as f:
            return f.read().decode("utf-16-le")


def esc(s):
    return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def recorded_item(n):
    """(id, revision, ServerSyncUpdateData fragment, fileUrls fragment) of a recording."""
    body = rec(n)
    item = re.search(r"<ServerSyncUpdateData>.*</ServerSyncUpdateData>", body).group(0)
    urls = re.search(r"<fileUrls>(.*)</fileUrls>", body)
    m = re.search(r"<UpdateID>(.*?)</UpdateID><RevisionNumber>(\d+)<", item)
    return m.group(1), int(m.group(2)), item, urls.group(1) if urls else ""


class Doc:
    """One update revision the server holds."""

    def __init__(self, uid, rev, xml, compressed=True, files=(), item=None, urls="",
                 packer=None):
        self.uid, self.rev, self.xml, self.compressed = uid, rev, xml, compressed
        self.packer = packer or cab_blob
        self.files = list(files)    # (sha1 b64, url)
        self.item, self.urls = item, urls   # recorded fragments, served verbatim

    def fragment(self):
        if self.item is not None:
            return self.item, self.urls
        out = ["<ServerSyncUpdateData><Id><UpdateID>%s</UpdateID><RevisionNumber>%d"
               "</RevisionNumber></Id>" % (self.uid, self.rev)]
        if self.files:
            out.append("<FileDigestList>%s</FileDigestList>" % "".join(
                "<base64Binary>%s</base64Binary>" % d for d, _ in self.files))
        if self.compressed:
            out.append("<XmlUpdateBlobCompressed>%s</XmlUpdateBlobCompressed>" %
                       self.packer(self.xml))
        else:
            out.append("<XmlUpdateBlob>%s</XmlUpdateBlob>" % esc(self.xml))
        out.append("</ServerSyncUpdateData>")
        urls = "".join("<ServerSyncUrlData><FileDigest>%s</FileDigest><MUUrl>%s</MUUrl>"
                       "<UssUrl /></ServerSyncUrlData>" % (d, u) for d, u in self.files)
        self.item, self.urls = "".join(out), urls     # made once, served many times
        return self.item, self.urls


class WsusUpstream:
    def __init__(self, port=0, volume=0):
        self.lock = threading.Lock()
        self.invalid_cookie = 0
        self.fail_ids = set()
        self.refuse_anchors = set()
        self.transient = 0
        self.service_url = None     # set: GetAuthConfig names this DSS URL instead
        self.data_ids = []
        self.requests = []          # operation names, in order
        self.bodies = None          # a list: every (path, request body) is appended
        self.gen = 1                # bumped by bump(); anchors name it
        self.changed_at = {}        # id -> gen of its last change
        self.docs = {}              # id -> Doc
        self.categories = []        # (id, revision) of GetConfig, old revisions too
        self.updates = []           # ids listed for the Defender x Definitions filter
        self.filters = {}           # (product, classification) -> ids listed
        self.leaf_xml = uncab_blob(re.search(
            r"<XmlUpdateBlobCompressed>(.*?)</", rec(14)).group(1))
        self.cat_xml = uncab_blob(re.search(
            r"<XmlUpdateBlobCompressed>(.*?)</", rec(16)).group(1))
        if volume:
            self._volume(volume)
        else:
            self._recorded()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), self._handler())
        self.port = self.httpd.server_address[1]
        self.url = "http://127.0.0.1:%d" % self.port
        self.thread = None

    # -- documents ---------------------------------------------------------

    def category_doc(self, uid, rev, kind, title, parent=None):
        """A category in the shape of the recorded company category."""
        x = self.cat_xml.replace('UpdateID="56309036-4C77-4DD9-951A-99EE9C246A94" '
                                 'RevisionNumber="101"',
                                 'UpdateID="%s" RevisionNumber="%d"' % (uid.upper(), rev))
        x = x.replace(">Microsoft<", ">%s<" % esc(title))
        if kind == "Detectoid":
            x = x.replace('UpdateType="Category" Handler="http://schemas.microsoft.com/msus/'
                          '2002/12/UpdateHandlers/Category"', 'UpdateType="Detectoid"')
            x = re.sub(r"<upd:HandlerSpecificData.*</upd:HandlerSpecificData>", "", x)
        else:
            x = x.replace('CategoryType="Company"', 'CategoryType="%s"' % kind)
        if parent:
            x = x.replace("</upd:LocalizedPropertiesCollection>",
                          "</upd:LocalizedPropertiesCollection><upd:Relationships>"
                          "<upd:Prerequisites><upd:AtLeastOne IsCategory=\"true\">"
                          "<upd:UpdateIdentity UpdateID=\"%s\" /></upd:AtLeastOne>"
                          "</upd:Prerequisites></upd:Relationships>" % parent)
        return Doc(uid, rev, x)

    def leaf_doc(self, uid, rev, title, cats=(), supersedes=(), bundled=(), pad=0,
                 compressed=True, state="Published"):
        """An update in the shape of the recorded leaf 266f6222 (one file)."""
        x = self.leaf_xml.replace(LEAF, uid).replace('RevisionNumber="200"',
                                                     'RevisionNumber="%d"' % rev, 1)
        x = re.sub(r"<upd:Title>.*?</upd:Title>", "<upd:Title>%s</upd:Title>" % esc(title), x)
        x = x.replace('PublicationState="Published"', 'PublicationState="%s"' % state)
        sha1 = base64.b64encode(hashlib.sha1(uid.encode() + b"%d" % rev).digest()).decode()
        sha256 = base64.b64encode(hashlib.sha256(uid.encode() + b"%d" % rev).digest()).decode()
        x = x.replace("h/W9BGlYUAaqXTp30cZi/SiV3c0=", sha1)
        x = x.replace("Amt0qymy5KsROiwIXm4QIIV75Ju4r+Cl28Pg8gaLXUA=", sha256)
        url = ("http://download.windowsupdate.com/c/msdownload/update/software/defu/"
               "synthetic/%s_%d.exe" % (uid, rev))
        rel = ""
        if supersedes:
            rel += "<upd:SupersededUpdates>%s</upd:SupersededUpdates>" % "".join(
                '<upd:UpdateIdentity UpdateID="%s" />' % s for s in supersedes)
        prereq = ('<upd:UpdateIdentity UpdateID="be4048db-157c-4532-9582-7f05099590c9" />'
                  + "".join('<upd:AtLeastOne IsCategory="true"><upd:UpdateIdentity '
                            'UpdateID="%s" /></upd:AtLeastOne>' % c for c in cats))
        rel += "<upd:Prerequisites>%s</upd:Prerequisites>" % prereq
        if bundled:
            rel += "<upd:BundledUpdates><upd:AtLeastOne>%s</upd:AtLeastOne></upd:BundledUpdates>" % \
                "".join('<upd:UpdateIdentity UpdateID="%s" RevisionNumber="%d" />' % b
                        for b in bundled)
        x = re.sub(r"<upd:Relationships>.*?</upd:Relationships>",
                   "<upd:Relationships>%s</upd:Relationships>" % rel, x)
        if pad:
            x = x.replace("</upd:Update>", "<upd:Padding>%s</upd:Padding></upd:Update>" %
                          ("x" * pad))
        return Doc(uid, rev, x, compressed, [(sha1, url)])

    def _recorded(self):
        for n in (13, 14, 15, 16):
            uid, rev, item, urls = recorded_item(n)
            self.docs[uid] = Doc(uid, rev, None, item=item, urls=urls)
        # Categories: the recorded list, then what the updates name.
        self.categories = re.findall(r"<UpdateID>(.*?)</UpdateID><RevisionNumber>(\d+)<",
                                     rec(6))
        self.categories = [(i, int(r)) for i, r in self.categories]
        for uid, rev in self.categories:
            if uid in self.docs or any(uid == c for c, _ in self.categories[:0]):
                continue
            if uid in CLASSIFICATIONS:
                self.docs[uid] = self.category_doc(uid, max(r for i, r in self.categories
                                                            if i == uid),
                                                   "UpdateClassification", CLASSIFICATIONS[uid])
            elif uid not in self.docs:
                self.docs[uid] = self.category_doc(
                    uid, max(r for i, r in self.categories if i == uid), "Detectoid",
                    "Detectoid " + uid[:8])
        extra = [(DEFENDER, 101, "Product", "Microsoft Defender Antivirus", MICROSOFT),
                 (DEFINITIONS, 100, "UpdateClassification", "Definition Updates", None)]
        for uid, rev, kind, title, parent in extra:
            self.docs[uid] = self.category_doc(uid, rev, kind, title, parent)
            self.categories.append((uid, rev))
        for det in ("be4048db-157c-4532-9582-7f05099590c9", "0aac58ee-82a0-4452-a7fa-19f68398f1fa",
                    "59653007-e2e9-4f71-8525-2ff588527978"):
            self.docs[det] = self.category_doc(det, 1, "Detectoid", "Detectoid " + det[:8])
            self.categories.append((det, 1))
        # The bundles' members that were not recorded.
        for bundle in (KB2267602, SMALL):
            for uid, rev in re.findall(r'UpdateID="([0-9a-f-]+)" RevisionNumber="(\d+)"',
                                       self.blob_xml(bundle))[1:]:
                if uid not in self.docs:
                    self.docs[uid] = self.leaf_doc(uid, int(rev), "Defender member " + uid[:8])
        listed = re.findall(r"<UpdateID>(.*?)</UpdateID><RevisionNumber>(\d+)<", rec(9))
        for uid, rev in listed:
            self.docs[uid] = self.leaf_doc(uid, int(rev), "Security Intelligence Update "
                                           "(synthetic) " + uid[:8], cats=(DEFINITIONS, DEFENDER))
        self.updates = [u for u, _ in listed] + [KB2267602, SMALL]
        self.filters[(DEFENDER, DEFINITIONS)] = self.updates

    def _volume(self, n):
        """n generated revisions: 4 products x 3 classifications, bundles of
        5, supersedence chains of 10, every 7th blob uncompressed, 3 of ~3 MB."""
        products = [("%08x-0000-4000-8000-00000000%04x" % (0xa000 + i, i), "Product %d" % i)
                    for i in range(4)]
        classes = [(DEFINITIONS, "Definition Updates"),
                   ("0fa1201d-4330-4fa8-8ae9-b877473b6441", "Security Updates"),
                   ("cd5ffd1e-e932-4e3a-bf74-18bf0b1bbd83", "Updates")]
        self.docs[MICROSOFT] = self.category_doc(MICROSOFT, 101, "Company", "Microsoft")
        self.categories.append((MICROSOFT, 101))
        for uid, title in products:
            self.docs[uid] = self.category_doc(uid, 100, "Product", title, MICROSOFT)
            self.categories.append((uid, 100))
        for uid, title in classes:
            self.docs[uid] = self.category_doc(uid, 100, "UpdateClassification", title)
            self.categories.append((uid, 100))
        det = "be4048db-157c-4532-9582-7f05099590c9"
        self.docs[det] = self.category_doc(det, 1, "Detectoid", "Detectoid be4048db")
        self.categories.append((det, 1))
        ids = [str(uuid.UUID(int=(0x5e5e << 112) | i, version=4)) for i in range(n)]
        members = set()
        for i, uid in enumerate(ids):
            p, c = products[i % 4][0], classes[(i // 4) % 3][0]
            key = (p, c)
            sup = (ids[i - 1],) if i % 10 and i > 0 else ()
            bundled = ()
            if i % 50 == 0 and i + 5 < n:
                bundled = tuple((ids[i + k], 200) for k in range(1, 6))
                members.update(b for b, _ in bundled)
            pad = 3 * 1024 * 1024 if i in (n // 3, n // 2, 2 * n // 3) else 0
            self.docs[uid] = self.leaf_doc(uid, 200, "Generated update %d" % i, cats=(c, p),
                                           supersedes=sup, bundled=bundled, pad=pad,
                                           compressed=i % 7 != 0)
            self.docs[uid].packer = mszip_blob
            if uid not in members:
                self.filters.setdefault(key, []).append(uid)
        self.updates = [u for v in self.filters.values() for u in v]
        probe = self.docs[ids[1]].xml
        if uncab_blob(mszip_blob(probe)) != probe:
            raise RuntimeError("mszip_blob() output does not read back with gcab")

    def warm(self, workers=2):
        """Make every document's answer now (gcab runs), not during a sync."""
        from concurrent.futures import ThreadPoolExecutor
        with ThreadPoolExecutor(workers) as ex:
            list(ex.map(lambda d: d.fragment(), list(self.docs.values())))

    def blob_xml(self, uid):
        """The update XML of a document as the server sends it (decoded)."""
        d = self.docs[uid]
        if d.xml is not None:
            return d.xml
        m = re.search(r"<XmlUpdateBlobCompressed>(.*?)</", d.item)
        if m:
            return uncab_blob(m.group(1))
        m = re.search(r"<XmlUpdateBlob>(.*?)</XmlUpdateBlob>", d.item)
        return m.group(1).replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")

    def add_update(self, uid, pad, compressed):
        """A new Defender x Definition Updates revision with `pad` bytes of
        extra XML (a large document), listed from now on."""
        with self.lock:
            self.gen += 1
            self.docs[uid] = self.leaf_doc(uid, 200, "Large update " + uid[:8],
                                           cats=(DEFINITIONS, DEFENDER), pad=pad,
                                           compressed=compressed)
            self.filters[(DEFENDER, DEFINITIONS)].append(uid)
            self.changed_at[uid] = self.gen

    def drop_update(self, uid):
        with self.lock:
            self.filters[(DEFENDER, DEFINITIONS)].remove(uid)

    def relist(self, uid):
        """List again an update drop_update() unlisted."""
        with self.lock:
            self.gen += 1
            self.filters[(DEFENDER, DEFINITIONS)].append(uid)
            self.changed_at[uid] = self.gen

    def bump(self, ids):
        """A changed upstream: each id gets revision + 1 and a new title."""
        with self.lock:
            self.gen += 1
            for uid in ids:
                d = self.docs[uid]
                x = self.blob_xml(uid)
                x = x.replace('RevisionNumber="%d"' % d.rev, 'RevisionNumber="%d"' % (d.rev + 1), 1)
                x = re.sub(r"<upd:Title>(.*?)</upd:Title>", r"<upd:Title>\1 (revised)</upd:Title>",
                           x, count=1)
                self.docs[uid] = Doc(uid, d.rev + 1, x, d.compressed, d.files, packer=d.packer)
                self.changed_at[uid] = self.gen

    def require(self, uid, prereq):
        """Revise update `uid` (revision + 1) to name the update `prereq` as
        a required prerequisite, directly under Prerequisites as real
        documents name one update needing another (no RevisionNumber)."""
        with self.lock:
            self.gen += 1
            d = self.docs[uid]
            x = self.blob_xml(uid)
            x = x.replace('RevisionNumber="%d"' % d.rev, 'RevisionNumber="%d"' % (d.rev + 1), 1)
            x = x.replace("<upd:Prerequisites>", '<upd:Prerequisites><upd:UpdateIdentity '
                          'UpdateID="%s" />' % prereq, 1)
            self.docs[uid] = Doc(uid, d.rev + 1, x, d.compressed, d.files, packer=d.packer)
            self.changed_at[uid] = self.gen

    # -- protocol ----------------------------------------------------------

    def anchor(self):
        return "%d,2026-10-04 16:33:26.750" % self.gen

    def answer(self, op, body):
        """(status, xml) for one request."""
        with self.lock:
            self.requests.append(op)
            if self.transient > 0:
                self.transient -= 1
                return 503, ""
        if op == "GetAuthConfig":
            if self.service_url:
                return 200, rec(1).replace("DssAuthWebService/DssAuthWebService.asmx",
                                           esc(self.service_url))
            return 200, rec(1)
        if op == "GetAuthorizationCookie":
            return 200, rec(2)
        if op == "GetCookie":
            return 200, rec(3)
        with self.lock:
            if self.invalid_cookie > 0:
                self.invalid_cookie -= 1
                return 500, rec(19)
        if body.find(".//{%s}cookie" % NS) is None:
            return 500, rec(19)
        if op == "GetConfigData":
            return 200, rec(5)
        if op == "GetRevisionIdList":
            return self.revision_ids(body)
        if op == "GetUpdateData":
            return self.update_data(body)
        return 500, rec(18)

    def revision_ids(self, body):
        f = body.find(".//{%s}filter" % NS)
        anchor = f.findtext("{%s}Anchor" % NS)
        if anchor in self.refuse_anchors or (anchor and not re.match(r"^\d+,", anchor)):
            return 500, rec(18)
        if (f.findtext("{%s}GetConfig" % NS) or "").strip() == "true":
            ids = self.categories
        else:
            prods = [e.findtext("{%s}Id" % NS) for e in
                     f.findall("{%s}Categories/{%s}IdAndDelta" % (NS, NS))]
            classes = [e.findtext("{%s}Id" % NS) for e in
                       f.findall("{%s}Classifications/{%s}IdAndDelta" % (NS, NS))]
            delta = any((e.text or "") == "true" for e in f.iter("{%s}Delta" % NS))
            since = int(anchor.split(",")[0]) if anchor and delta else None
            ids = []
            for p in prods:
                for c in classes:
                    for uid in self.filters.get((p, c), ()):
                        if since is None or self.changed_at.get(uid, 0) > since:
                            ids.append((uid, self.docs[uid].rev))
        out = "".join("<UpdateIdentity><UpdateID>%s</UpdateID><RevisionNumber>%d"
                      "</RevisionNumber></UpdateIdentity>" % r for r in ids)
        return 200, (SOAP_HEAD + '<GetRevisionIdListResponse xmlns="%s"><GetRevisionIdListResult>'
                     "<Anchor>%s</Anchor><NewRevisions>%s</NewRevisions></GetRevisionIdListResult>"
                     "</GetRevisionIdListResponse>" % (NS, self.anchor(), out) + SOAP_TAIL)

    def update_data(self, body):
        wanted = [(e.findtext("{%s}UpdateID" % NS).lower(), int(e.findtext("{%s}RevisionNumber" % NS)))
                  for e in body.iter("{%s}UpdateIdentity" % NS)]
        with self.lock:
            self.data_ids.extend(u for u, _ in wanted)
        items, urls = [], []
        for uid, rev in wanted:
            d = self.docs.get(uid)
            if d is None or uid in self.fail_ids or d.rev != rev:
                return 500, rec(17)
            i, u = d.fragment()
            items.append(i)
            urls.append(u)
        return 200, (SOAP_HEAD + '<GetUpdateDataResponse xmlns="%s"><GetUpdateDataResult><updates>'
                     "%s</updates><fileUrls>%s</fileUrls></GetUpdateDataResult>"
                     "</GetUpdateDataResponse>" % (NS, "".join(items), "".join(urls)) + SOAP_TAIL)

    def _handler(self):
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, fmt, *args):
                pass

            def do_POST(self):
                n = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(n)
                if up.bodies is not None:
                    up.bodies.append((self.path, raw))
                try:
                    env = ET.fromstring(raw)
                    op_el = env.find("{http://schemas.xmlsoap.org/soap/envelope/}Body")[0]
                    op = op_el.tag.split("}")[1]
                    status, xml = up.answer(op, op_el)
                except Exception as e:  # a malformed request is the client's bug
                    sys.stderr.write("wsus_upstream: %r\n" % e)
                    status, xml = 500, rec(18)
                data = xml.encode("utf-8")
                self.send_response(status)
                self.send_header("Content-Type", "text/xml; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        return Handler

    def start(self):
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--port", type=int, default=8530)
    ap.add_argument("--volume", type=int, default=0)
    a = ap.parse_args()
    up = WsusUpstream(a.port, a.volume)
    if a.volume:
        up.warm()
    print("serving %d documents at %s" % (len(up.docs), up.url), flush=True)
    up.httpd.serve_forever()


if __name__ == "__main__":
    main()
