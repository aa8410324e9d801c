#!/usr/bin/env python3
"""Image helpers for benches/capture-compare.sh (standard library only, Python >= 3.9).

Subcommands:

  patch GEN0 GEN1 OUT
      Writes to OUT the 4 KiB pages of GEN1 that differ from GEN0 (same size),
      as records of (offset, length, data) over runs of adjacent changed pages:
      the churn from GEN0 to GEN1 as a guest would write it, page by page.
      Only the data extents of either file are compared (SEEK_DATA/SEEK_HOLE).
      Prints one JSON line: {"runs", "bytes"}.

  apply PATCH DISK [--at OFFSET]
      Writes the pages of PATCH into DISK in place (pwrite at OFFSET + each
      record's offset), then fsyncs DISK. Prints the bytes written.

  apply-qemu PATCH DISK [--format FMT]
      Writes the pages of PATCH into DISK through QEMU, as a guest of a qcow2
      disk would (one `qemu-io` run, a `write -s` per record, the record's
      data staged in a temporary file), so that QEMU's dirty bitmaps see
      them. Prints the bytes written.

  synth SIZE OUT --bytes N [--run BYTES] [--seed S]
      Writes to OUT a patch (the format of `patch`) of N bytes of new data in
      runs of --run bytes (default 65536) at random run-aligned offsets of a
      disk of SIZE bytes, no two runs at the same offset: a guest's scattered
      writes, larger than gen1's churn. Each run is half random bytes, half
      zeros (compressible about 2:1, as real data is). Prints one JSON line:
      {"runs", "bytes"}.

  data PATCH OUT
      Writes the data of PATCH's records back to back into OUT: the bytes a
      backup of the patched blocks reads, as one file (for the floors).

  spread SRC DST --size BYTES --copies N --stride BYTES --shift BYTES
      Makes DST a sparse file of --size bytes holding N copies of the data
      extents of SRC, copy i at byte i * (stride + shift) (copy 0 at 0, so the
      first region of DST is SRC itself). A shift that is not a multiple of
      the backup's block size makes every copy's blocks differ from the
      others', so a deduplicating backup stores each copy in full. Fsyncs DST.

  same A B
      Exits 0 when the two files have the same size and the same bytes,
      comparing only the ranges where either holds data (holes read as
      zeros): a byte-for-byte check of two sparse files that does not read
      their holes. Exits 1 and names the first differing offset otherwise.
"""

import argparse
import json
import os
import struct
import sys

PAGE = 4096
CHUNK = 8 * 1024 * 1024
RECORD = struct.Struct("<QQ")


def data_extents(fd, size):
    """Yields (start, end) of each data extent (via SEEK_DATA/SEEK_HOLE)."""
    off = 0
    while off < size:
        try:
            start = os.lseek(fd, off, os.SEEK_DATA)
        except OSError:  # ENXIO: no data after off
            return
        end = min(os.lseek(fd, start, os.SEEK_HOLE), size)
        yield start, end
        off = end


def union_extents(fds, size):
    """The sorted, merged data extents of several files of the same size."""
    spans = sorted(e for fd in fds for e in data_extents(fd, size))
    merged = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return merged


def pread_full(fd, length, offset):
    data = os.pread(fd, length, offset)
    if len(data) < length:  # past the end: zeros, as a sparse tail reads
        data += bytes(length - len(data))
    return data


def cmd_patch(args):
    a = os.open(args.gen0, os.O_RDONLY)
    b = os.open(args.gen1, os.O_RDONLY)
    size = os.fstat(a).st_size
    if os.fstat(b).st_size != size:
        sys.exit("patch: the images differ in size")
    runs = 0
    total = 0
    with open(args.out, "wb") as out:
        for start, end in union_extents([a, b], size):
            off = start
            while off < end:
                n = min(CHUNK, end - off)
                x = pread_full(a, n, off)
                y = pread_full(b, n, off)
                if x != y:
                    run_start = None
                    for p in range(0, n, PAGE):
                        differs = x[p:p + PAGE] != y[p:p + PAGE]
                        if differs and run_start is None:
                            run_start = p
                        if not differs and run_start is not None:
                            out.write(RECORD.pack(off + run_start, p - run_start))
                            out.write(y[run_start:p])
                            runs += 1
                            total += p - run_start
                            run_start = None
                    if run_start is not None:
                        out.write(RECORD.pack(off + run_start, n - run_start))
                        out.write(y[run_start:n])
                        runs += 1
                        total += n - run_start
                off += n
    print(json.dumps({"runs": runs, "bytes": total}))


def cmd_apply(args):
    fd = os.open(args.disk, os.O_WRONLY)
    total = 0
    with open(args.patch, "rb") as f:
        while True:
            head = f.read(RECORD.size)
            if not head:
                break
            off, length = RECORD.unpack(head)
            data = f.read(length)
            if len(data) != length:
                sys.exit("apply: truncated patch")
            os.pwrite(fd, data, args.at + off)
            total += length
    os.fsync(fd)
    os.close(fd)
    print(total)


def cmd_apply_qemu(args):
    import subprocess
    import tempfile

    total = 0
    commands = []
    with tempfile.TemporaryDirectory(prefix="apply-qemu-") as tmp, open(args.patch, "rb") as f:
        while True:
            head = f.read(RECORD.size)
            if not head:
                break
            off, length = RECORD.unpack(head)
            data = f.read(length)
            if len(data) != length:
                sys.exit("apply-qemu: truncated patch")
            src = os.path.join(tmp, f"{len(commands)}.bin")
            with open(src, "wb") as out:
                out.write(data)
            commands += ["-c", f"write -s {src} {off} {length}"]
            total += length
        if commands:
            subprocess.run(
                ["qemu-io", "-f", args.format, *commands, args.disk],
                check=True,
                stdout=subprocess.DEVNULL,
            )
    print(total)


def cmd_synth(args):
    import random

    rng = random.Random(args.seed)
    slots = args.size // args.run
    runs = min(args.bytes // args.run, slots)
    with open(args.out, "wb") as out:
        for slot in sorted(rng.sample(range(slots), runs)):
            half = args.run // 2
            data = rng.randbytes(half) + bytes(args.run - half)
            out.write(RECORD.pack(slot * args.run, args.run))
            out.write(data)
    print(json.dumps({"runs": runs, "bytes": runs * args.run}))


def cmd_data(args):
    with open(args.patch, "rb") as f, open(args.out, "wb") as out:
        while True:
            head = f.read(RECORD.size)
            if not head:
                break
            _, length = RECORD.unpack(head)
            data = f.read(length)
            if len(data) != length:
                sys.exit("data: truncated patch")
            out.write(data)
        out.flush()
        os.fsync(out.fileno())


def cmd_spread(args):
    src = os.open(args.src, os.O_RDONLY)
    size = os.fstat(src).st_size
    last = (args.copies - 1) * (args.stride + args.shift) + size
    if last > args.size:
        sys.exit(f"spread: {args.copies} copies need {last} bytes, more than --size")
    dst = os.open(args.dst, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.ftruncate(dst, args.size)
    extents = list(data_extents(src, size))
    for i in range(args.copies):
        base = i * (args.stride + args.shift)
        for start, end in extents:
            off = start
            while off < end:
                data = os.pread(src, min(CHUNK, end - off), off)
                os.pwrite(dst, data, base + off)
                off += len(data)
    os.fsync(dst)
    os.close(dst)


def cmd_same(args):
    a = os.open(args.a, os.O_RDONLY)
    b = os.open(args.b, os.O_RDONLY)
    size = os.fstat(a).st_size
    if os.fstat(b).st_size != size:
        print(f"sizes differ: {size} vs {os.fstat(b).st_size}")
        sys.exit(1)
    for start, end in union_extents([a, b], size):
        off = start
        while off < end:
            n = min(CHUNK, end - off)
            x = pread_full(a, n, off)
            y = pread_full(b, n, off)
            if x != y:
                first = next(i for i in range(n) if x[i] != y[i])
                print(f"differ at byte {off + first}")
                sys.exit(1)
            off += n


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("patch")
    s.add_argument("gen0")
    s.add_argument("gen1")
    s.add_argument("out")
    s.set_defaults(func=cmd_patch)
    s = sub.add_parser("apply")
    s.add_argument("patch")
    s.add_argument("disk")
    s.add_argument("--at", type=int, default=0)
    s.set_defaults(func=cmd_apply)
    s = sub.add_parser("synth")
    s.add_argument("size", type=int)
    s.add_argument("out")
    s.add_argument("--bytes", type=int, required=True)
    s.add_argument("--run", type=int, default=65536)
    s.add_argument("--seed", type=int, default=24)
    s.set_defaults(func=cmd_synth)

    s = sub.add_parser("data")
    s.add_argument("patch")
    s.add_argument("out")
    s.set_defaults(func=cmd_data)

    s = sub.add_parser("apply-qemu")
    s.add_argument("patch")
    s.add_argument("disk")
    s.add_argument("--format", default="qcow2")
    s.set_defaults(func=cmd_apply_qemu)
    s = sub.add_parser("spread")
    s.add_argument("src")
    s.add_argument("dst")
    s.add_argument("--size", type=int, required=True)
    s.add_argument("--copies", type=int, required=True)
    s.add_argument("--stride", type=int, required=True)
    s.add_argument("--shift", type=int, required=True)
    s.set_defaults(func=cmd_spread)
    s = sub.add_parser("same")
    s.add_argument("a")
    s.add_argument("b")
    s.set_defaults(func=cmd_same)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
