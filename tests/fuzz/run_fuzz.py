#!/usr/bin/env python3
"""Run one libFuzzer target for a bounded time (the meson `fuzz` suite).

  run_fuzz.py TARGET_EXE NAME FUZZ_SRC_DIR BUILD_DIR SECONDS [EXTRA_ARGS...]

First every known crash reproducer in FUZZ_SRC_DIR/crashes/NAME/ is run
once (a regression check: it fails until the decoder is fixed), then the
target fuzzes for SECONDS seconds starting from the seed corpus
FUZZ_SRC_DIR/corpus/NAME/. New inputs are written to
BUILD_DIR/work/NAME/, crash artifacts to BUILD_DIR/artifacts/NAME-*.
Exit status: the target's (0 = nothing found).
"""
import glob
import os
import subprocess
import sys


def main():
    exe, name, src, build, seconds = sys.argv[1:6]
    extra = sys.argv[6:]
    corpus = os.path.join(src, "corpus", name)
    crashes = sorted(glob.glob(os.path.join(src, "crashes", name, "*")))
    work = os.path.join(build, "work", name)
    arts = os.path.join(build, "artifacts")
    os.makedirs(work, exist_ok=True)
    os.makedirs(arts, exist_ok=True)
    if not os.path.isdir(corpus) or not os.listdir(corpus):
        sys.stderr.write("no seed corpus in %s\n" % corpus)
        return 1
    # libFuzzer's own error status is 77, which meson reads as "skipped".
    common = ["-artifact_prefix=%s/%s-" % (arts, name), "-timeout=10",
              "-error_exitcode=1", "-timeout_exitcode=1",
              "-rss_limit_mb=2048", "-max_len=1048576"]
    rc = 0
    if crashes:
        sys.stderr.write("replaying %d known crash(es) of %s\n" % (len(crashes), name))
        p = subprocess.run([exe] + common + crashes)
        if p.returncode != 0:
            sys.stderr.write("a known crash of %s still reproduces\n" % name)
            rc = p.returncode
    argv = [exe] + common + ["-max_total_time=%s" % seconds,
                             "-print_final_stats=1"] + extra + [work, corpus]
    sys.stderr.write("running %s\n" % " ".join(argv))
    p = subprocess.run(argv)
    rc = p.returncode or rc
    return 1 if rc == 77 else rc


if __name__ == "__main__":
    sys.exit(main())
