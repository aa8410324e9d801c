#!/usr/bin/env python3
"""Data helpers for benches/scale.sh (standard library only, Python >= 3.9).

Subcommands:

  place SRC DST BASE [--below BYTES]
      Copies every data extent of the sparse image SRC (found with
      SEEK_DATA/SEEK_HOLE, so holes are never read) into DST at BASE + the
      extent's offset, with copy_file_range; only extents that end below
      --below (default: all). DST is not truncated: pieces of several
      images can be laid out in one sparse disk.

  sparse-cmp A B
      Byte-for-byte comparison of two files of the same size that reads only
      what may differ: the union of both files' data extents (outside it both
      are holes, so both read as zeros). Equivalent to cmp, without reading a
      terabyte of holes. Exits 1 on the first difference, naming its offset.

  vm-disk PATH --size BYTES --shared SRC --shared-bytes N --own-bytes N --seed S [--changed N]
      A small VM disk: at offset 0, the first N data bytes of the image SRC
      (the same for every VM: shared chunks), at 1/2 of the disk, N bytes of
      this VM's own data (seeded: half random, half text, so zstd finds
      something). --changed N rewrites the first N bytes of the VM's own
      data with a second seed (the churn of its second backup).

  pages PATH --blocks N --block-size BYTES --page BYTES
      A sparse disk of N blocks whose every block starts with PAGE bytes of
      data unique to that block (the block's number, repeated) and is holes
      otherwise: N distinct chunks for N * PAGE bytes allocated.
"""

import argparse
import os
import random
import struct
import sys


def data_extents(fd, size):
    off, out = 0, []
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:
            break
        end = os.lseek(fd, start, os.SEEK_HOLE)
        out.append((start, end))
        off = end
    return out


def cmd_place(args):
    src = os.open(args.src, os.O_RDONLY)
    dst = os.open(args.dst, os.O_WRONLY | os.O_CREAT, 0o644)
    size = os.fstat(src).st_size
    copied = 0
    for start, end in data_extents(src, size):
        if args.below is not None and end > args.below:
            continue
        off_in, off_out, left = start, args.base + start, end - start
        while left:
            n = os.copy_file_range(src, dst, min(left, 1 << 30), off_in, off_out)
            if n == 0:
                sys.exit("copy_file_range returned 0")
            off_in, off_out, left = off_in + n, off_out + n, left - n
        copied += end - start
    os.close(src)
    os.close(dst)
    print(copied)


def cmd_sparse_cmp(args):
    fa, fb = os.open(args.a, os.O_RDONLY), os.open(args.b, os.O_RDONLY)
    sa, sb = os.fstat(fa).st_size, os.fstat(fb).st_size
    if sa != sb:
        print(f"sizes differ: {args.a} {sa}, {args.b} {sb}")
        sys.exit(1)
    ranges = sorted(data_extents(fa, sa) + data_extents(fb, sb))
    merged = []
    for s, e in ranges:
        if merged and s <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], e)
        else:
            merged.append([s, e])
    compared = 0
    step = 8 << 20
    for s, e in merged:
        off = s
        while off < e:
            n = min(step, e - off)
            a, b = os.pread(fa, n, off), os.pread(fb, n, off)
            if a != b:
                i = next(i for i in range(n) if a[i : i + 1] != b[i : i + 1])
                print(f"{args.a} {args.b} differ: byte {off + i + 1}")
                sys.exit(1)
            off += n
            compared += n
    print(compared)


def own_data(seed, n):
    rng = random.Random(seed)
    out = bytearray()
    words = [b"alpha", b"beta", b"gamma", b"delta", b"vm", b"log", b"GET /index.html", b"200", b"\n"]
    while len(out) < n:
        out += rng.randbytes(2048)
        line = b" ".join(rng.choice(words) for _ in range(256))
        out += line[:2048]
    return bytes(out[:n])


def cmd_vm_disk(args):
    fd = os.open(args.path, os.O_RDWR | os.O_CREAT, 0o644)
    os.ftruncate(fd, args.size)
    if args.changed:
        os.pwrite(fd, own_data(args.seed + 1_000_000, args.changed), args.size // 2)
    else:
        src = os.open(args.shared, os.O_RDONLY)
        left, out = args.shared_bytes, 0
        for start, end in data_extents(src, os.fstat(src).st_size):
            n = min(end - start, left)
            os.pwrite(fd, os.pread(src, n, start), out)
            out, left = out + n, left - n
            if not left:
                break
        os.close(src)
        os.pwrite(fd, own_data(args.seed, args.own_bytes), args.size // 2)
    os.close(fd)


def cmd_pages(args):
    fd = os.open(args.path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(fd, args.blocks * args.block_size)
    reps = args.page // 8
    for i in range(args.blocks):
        os.pwrite(fd, struct.pack("<Q", i + 1) * reps, i * args.block_size)
    os.close(fd)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("place")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("base", type=int)
    s.add_argument("--below", type=int)
    s.set_defaults(run=cmd_place)
    s = sub.add_parser("sparse-cmp")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(run=cmd_sparse_cmp)
    s = sub.add_parser("vm-disk")
    s.add_argument("path")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--shared")
    s.add_argument("--shared-bytes", type=int, default=0)
    s.add_argument("--own-bytes", type=int, default=0)
    s.add_argument("--seed", type=int, required=True)
    s.add_argument("--changed", type=int, default=0)
    s.set_defaults(run=cmd_vm_disk)
    s = sub.add_parser("pages")
    s.add_argument("path")
    s.add_argument("--blocks", type=int, required=True)
    s.add_argument("--block-size", type=int, required=True)
    s.add_argument("--page", type=int, required=True)
    s.set_defaults(run=cmd_pages)
    args = p.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
