#!/usr/bin/env python3
"""Embed the numbered SQL migrations into a C source file."""
import os
import re
import sys


def c_string(text, sep='\n\t'):
    """Text as adjacent C string literals, one a line (server/embed_html.py too)."""
    lines = []
    for line in text.splitlines(True):
        esc = line.replace('\\', '\\\\').replace('"', '\\"').replace('\n', '\\n')
        lines.append('"%s"' % esc)
    return sep.join(lines) or '""'


def main():
    out_c, out_h = sys.argv[1], sys.argv[2]
    files = sorted(sys.argv[3:], key=os.path.basename)
    with open(out_h, 'w') as h:
        h.write('/* Generated from the SQL files in storage/schema: do not edit. */\n#pragma once\n'
                '#include <stddef.h>\n'
                'typedef struct { int version; const char *name; const char *sql; } schema_migration_t;\n'
                'extern const schema_migration_t schema_migrations[];\n'
                'extern const size_t schema_migrations_count;\n')
    with open(out_c, 'w') as c:
        c.write('/* Generated from the SQL files in storage/schema: do not edit. */\n'
                '#include "storage/schema_sql.h"\n\nconst schema_migration_t schema_migrations[] = {\n')
        for path in files:
            base = os.path.basename(path)
            m = re.match(r'^(\d+)_(.+)\.sql$', base)
            if not m:
                sys.exit('bad migration name: ' + base)
            with open(path) as f:
                c.write('\t{ %d, "%s",\n\t%s },\n' % (int(m.group(1)), m.group(2), c_string(f.read())))
        c.write('};\nconst size_t schema_migrations_count = sizeof(schema_migrations) / sizeof(schema_migrations[0]);\n')


if __name__ == '__main__':
    main()
