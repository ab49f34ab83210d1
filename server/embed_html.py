#!/usr/bin/env python3
"""Embed an HTML page into a C source file as one string constant.

Usage: embed_html.py INPUT.html OUTPUT.c SYMBOL HEADER
Writes `const char SYMBOL[] = "...";` (declared in HEADER), byte for byte
the file's content, so the page is edited as HTML and still served from
the binary (an isolated site server has no files to find).
"""
import sys

src, out_c, symbol, header = sys.argv[1:5]


def c_string(text):
    lines = []
    for line in text.splitlines(True):
        esc = line.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
        lines.append('"%s"' % esc)
    return '\n'.join(lines) or '""'


with open(src, encoding='utf-8') as f:
    text = f.read()
with open(out_c, 'w', encoding='utf-8') as c:
    c.write('/* Generated from %s by server/embed_html.py: do not edit. */\n'
            '#include "%s"\n\nconst char %s[] =\n%s;\n' % (src.split('/')[-1], header, symbol, c_string(text)))
