#!/usr/bin/env python3
"""Packs a fuzz corpus directory into one file, or unpacks it (scripts/fuzz.sh uses both).

A packed corpus (readers/fuzz/corpus/<target>.gz) is a gzip stream of records, each a 4-byte
little-endian length and that many bytes of input, in file-name order: thousands of inputs in one
small file the repository can hold, read back by readers/tests/corpus.rs.

  fuzz_corpus.py pack DIR FILE.gz      every file of DIR, into FILE.gz
  fuzz_corpus.py unpack FILE.gz DIR    each input into DIR, named by its SHA-1 (as libFuzzer does)
"""
import gzip
import hashlib
import os
import struct
import sys


def pack(src, dst):
    names = sorted(n for n in os.listdir(src) if os.path.isfile(os.path.join(src, n)))
    # mtime 0: the same inputs pack to the same bytes, so an unchanged corpus is no diff.
    with open(dst + ".tmp", "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", compresslevel=9, mtime=0) as out:
        for n in names:
            data = open(os.path.join(src, n), "rb").read()
            out.write(struct.pack("<I", len(data)) + data)
    os.replace(dst + ".tmp", dst)
    print(f"{dst}: {len(names)} inputs", file=sys.stderr)


def unpack(src, dst):
    os.makedirs(dst, exist_ok=True)
    n = 0
    if os.path.exists(src):
        with gzip.open(src, "rb") as f:
            while head := f.read(4):
                (size,) = struct.unpack("<I", head)
                data = f.read(size)
                open(os.path.join(dst, hashlib.sha1(data).hexdigest()), "wb").write(data)
                n += 1
    print(f"{src}: {n} inputs", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] not in ("pack", "unpack"):
        sys.exit(__doc__)
    (pack if sys.argv[1] == "pack" else unpack)(sys.argv[2], sys.argv[3])
