#!/usr/bin/env python3
"""Validate sitesync /metrics text (read on stdin) with the Prometheus parser.

Used by tests/unit/test_http.c. Besides parsing with prometheus_client, it
checks what the parser forgives: HELP and TYPE before the samples of each
family, families not split, the sample line syntax, and sitesync's own
rules (one-hot sitesync_state, a site label on per-site families).

  check_metrics.py --sites CAS,P01,S01 \
      --expect 'sitesync_catalog_version{site="P01"}=41' ...

Exit status: 0 valid, 1 invalid (reasons on stderr), 3 parser not installed.
"""
import argparse
import re
import sys

try:
    from prometheus_client.parser import text_string_to_metric_families
except ImportError:
    sys.stderr.write("check_metrics.py: the Python module prometheus_client is "
                     "missing: install the Debian package python3-prometheus-client\n")
    sys.exit(3)

STATES = ("idle", "syncing", "succeeded", "failed", "stale")

# Families every render must declare, with their type.
FAMILIES = {
    "sitesync_top_version": "gauge",
    "sitesync_catalog_version": "gauge",
    "sitesync_lag_versions": "gauge",
    "sitesync_lag_seconds": "gauge",
    "sitesync_state": "gauge",
    "sitesync_link_up": "gauge",
    "sitesync_last_success_timestamp_seconds": "gauge",
    "sitesync_consecutive_failures": "gauge",
    "sitesync_bytes_received": "counter",  # the parser drops _total
    "sitesync_last_sync_added": "gauge",
    "sitesync_last_sync_changed": "gauge",
    "sitesync_last_sync_removed": "gauge",
    "sitesync_last_sync_expired": "gauge",
}

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\\\|\\"|\\n)*"'
LABELS = r"\{(?:%s=%s(?:,%s=%s)*,?)?\}" % (r"[a-zA-Z_][a-zA-Z0-9_]*", LABEL_VALUE,
                                            r"[a-zA-Z_][a-zA-Z0-9_]*", LABEL_VALUE)
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
SAMPLE_RE = re.compile(r"^(%s)(%s)? %s(?: -?\d+)?$" % (NAME, LABELS, VALUE))


def check_syntax(text, errors):
    """Line-level rules of text format 0.0.4 that the parser does not enforce."""
    if text and not text.endswith("\n"):
        errors.append("text does not end with a newline")
    declared = {}      # family -> type
    helped = set()
    finished = set()   # families whose sample block has ended
    current = None
    for no, line in enumerate(text.split("\n")[:-1], 1):
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            if name in helped:
                errors.append("line %d: second HELP for %s" % (no, name))
            helped.add(name)
            continue
        if line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in ("counter", "gauge", "histogram",
                                                     "summary", "untyped"):
                errors.append("line %d: bad TYPE line %r" % (no, line))
                continue
            if parts[2] in declared:
                errors.append("line %d: second TYPE for %s" % (no, parts[2]))
            declared[parts[2]] = parts[3]
            continue
        if line.startswith("#") or line == "":
            continue
        m = SAMPLE_RE.match(line)
        if not m:
            errors.append("line %d: not a valid sample: %r" % (no, line))
            continue
        name = m.group(1)
        if name not in declared:
            errors.append("line %d: sample of %s before its TYPE line" % (no, name))
        if name not in helped:
            errors.append("line %d: %s has no HELP line" % (no, name))
        if name != current:
            if name in finished:
                errors.append("line %d: samples of %s are split" % (no, name))
            if current is not None:
                finished.add(current)
            current = name


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--sites", default="", help="comma list of expected site codes")
    ap.add_argument("--expect", action="append", default=[],
                    help='name{label="v",...}=value, exact sample expected')
    ap.add_argument("--absent", action="append", default=[],
                    help='name{label="v",...}: sample that must not be there')
    args = ap.parse_args()

    text = sys.stdin.read()
    errors = []
    check_syntax(text, errors)
    try:
        families = list(text_string_to_metric_families(text))
    except Exception as e:  # the parser raises ValueError and friends
        sys.stderr.write("prometheus parser refused the text: %s\n" % e)
        return 1

    by_name = {f.name: f for f in families}
    for name, mtype in FAMILIES.items():
        fam = by_name.get(name)
        if fam is None:
            errors.append("family %s missing" % name)
        elif fam.type != mtype:
            errors.append("family %s has type %s, want %s" % (name, fam.type, mtype))

    samples = {}
    for fam in families:
        for s in fam.samples:
            if fam.name != "sitesync_top_version" and "site" not in s.labels:
                errors.append("%s sample without a site label: %r" % (s.name, s.labels))
            key = (s.name, tuple(sorted(s.labels.items())))
            samples[key] = s.value

    expected_sites = [x for x in args.sites.split(",") if x]
    for code in expected_sites:
        hot = [st for st in STATES
               if samples.get(("sitesync_state", (("site", code), ("state", st)))) == 1]
        present = [st for st in STATES
                   if ("sitesync_state", (("site", code), ("state", st))) in samples]
        if len(present) != len(STATES):
            errors.append("site %s: sitesync_state has %s, want all of %s"
                          % (code, present, list(STATES)))
        if len(hot) != 1:
            errors.append("site %s: sitesync_state is not one-hot: %s" % (code, hot))
        if ("sitesync_link_up", (("site", code),)) not in samples:
            errors.append("site %s: no sitesync_link_up" % code)
    seen_sites = {dict(k[1]).get("site") for k in samples} - {None}
    if expected_sites and seen_sites != set(expected_sites):
        errors.append("sites in metrics %s, want %s" % (sorted(seen_sites),
                                                        sorted(expected_sites)))

    spec_re = re.compile(r"^(%s)(?:\{(.*)\})?$" % NAME)
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')

    def key_of(spec):
        m = spec_re.match(spec)
        if not m:
            raise SystemExit("check_metrics.py: bad sample spec %r" % spec)
        labels = {}
        for lm in label_re.finditer(m.group(2) or ""):
            labels[lm.group(1)] = re.sub(r'\\(.)', lambda e: "\n" if e.group(1) == "n"
                                         else e.group(1), lm.group(2))
        return (m.group(1), tuple(sorted(labels.items())))

    for exp in args.expect:
        spec, _, want = exp.rpartition("=")
        key = key_of(spec)
        if key not in samples:
            errors.append("sample %s missing" % spec)
        elif samples[key] != float(want):
            errors.append("sample %s = %r, want %s" % (spec, samples[key], want))
    for spec in args.absent:
        if key_of(spec) in samples:
            errors.append("sample %s should be absent" % spec)

    for e in errors:
        sys.stderr.write("check_metrics.py: %s\n" % e)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
