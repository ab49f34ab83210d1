#!/usr/bin/env python3
"""Embed an HTML page into a C source file as one string constant.

Usage: embed_html.py INPUT.html OUTPUT.c SYMBOL HEADER
Writes `const char SYMBOL[] = "...";` (declared in HEADER), byte for byte
the file's content, so the page is edited as HTML and still served from
the binary (an isolated site server has no files to find).
"""
import os
import sys

# One C-string encoder for everything embedded at build time.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'storage'))
from embed_sql import c_string  # noqa: E402

src, out_c, symbol, header = sys.argv[1:5]


with open(src, encoding='utf-8') as f:
    text = f.read()
with open(out_c, 'w', encoding='utf-8') as c:
    c.write('/* Generated from %s by server/embed_html.py: do not edit. */\n'
            '#include "%s"\n\nconst char %s[] =\n%s;\n' % (src.split('/')[-1], header, symbol, c_string(text, '\n')))
