#!/usr/bin/env python3
"""Helpers for benches/make-image.sh (standard library only, Python >= 3.9).

Subcommands:

  churn --rootfs DIR --out DIR [--seed N]
      Writes the payload files of the churn generation into --out and a
      debugfs command script (--out/debugfs.cmds) that applies them to a copy
      of gen0.img: new files (compressible text, an incompressible download, a
      patched binary, a small database, new logs), appended logs (a longer
      version written and renamed over the old one, since debugfs cannot
      append), a rotated log, and a purged package (its files deleted, the
      dpkg status rewritten). Deletions come last so new data is not
      scattered into the freed holes.
      Everything is derived from --rootfs (the tree gen0 was built from) and a
      fixed seed, so the same rootfs always gives the same churn.

  blockdiff A B [--block-size BYTES]
      Compares two images of the same size block by block (default 4 MiB) and
      prints the allocated and changed block counts.  Blocks that are holes in
      both files are skipped with SEEK_DATA, so comparing two 8 GiB sparse
      images with 1.4 GB of data reads only the data.

  pagediff A B [--block-sizes BYTES,...]
      Counts the 4 KiB pages that differ between two images of the same size
      (the bytes a change really touched) and, for each block size, how many
      blocks hold at least one of them (what a fixed-block tool must resend).
      Skips holes in both files like blockdiff. Prints one JSON line:
      {"pages_changed", "bytes_changed", "allocated_bytes",
       "blocks_touched": {"<block size>": N, ...}}.

  warm PATH...
      Reads every data extent of each file (directories are walked) so that
      it sits in the page cache, skipping holes with SEEK_DATA/SEEK_HOLE:
      warming an 8 GiB sparse image with 1.4 GB of data reads 1.4 GB.
      Prints the bytes read on stderr.
"""

import argparse
import gzip
import os
import random
import shutil
import stat
import sys

MiB = 1024 * 1024

# Unprivileged user that owns the new files under /home (created by the churn).
USER_UID = 1000
USER_GID = 1000

# The package that the churn purges (present in the image, used by nothing).
REMOVED_PACKAGE = "tmux"


# --------------------------------------------------------------------------
# churn
# --------------------------------------------------------------------------

class Churn:
    """Collects payload files and the debugfs commands that install them."""

    def __init__(self, rootfs, out, seed):
        self.rootfs = os.path.abspath(rootfs)
        self.out = os.path.abspath(out)
        self.rng = random.Random(seed)
        self.cmds = []
        self.counter = 0
        self.bytes_new = 0
        self.bytes_deleted = 0
        self.summary = []

    # -- helpers -----------------------------------------------------------

    def host(self, image_path):
        """Path inside the rootfs tree of an absolute image path."""
        return os.path.join(self.rootfs, image_path.lstrip("/"))

    def payload_path(self):
        self.counter += 1
        return os.path.join(self.out, "payload-%04d" % self.counter)

    def mkdir(self, image_dir, owner=None):
        if not os.path.isdir(self.host(image_dir)):
            self.cmds.append("mkdir %s" % image_dir)
            if owner:
                self.chown(image_dir, owner)

    def chown(self, image_path, owner):
        uid, gid = owner
        self.cmds.append("sif %s uid %d" % (image_path, uid))
        self.cmds.append("sif %s gid %d" % (image_path, gid))

    def write(self, image_path, data, mode=0o644, owner=None):
        """Installs `data` as a new file at image_path (parent must exist)."""
        src = self.payload_path()
        with open(src, "wb") as f:
            f.write(data)
        os.chmod(src, mode)
        parent, name = os.path.split(image_path)
        # debugfs `write` only takes a name in the current directory.
        self.cmds.append("cd %s" % (parent or "/"))
        self.cmds.append("write %s %s" % (src, name))
        self.cmds.append("cd /")
        if owner:
            self.chown(image_path, owner)
        self.bytes_new += len(data)

    def delete_tree(self, image_path):
        """rm every file below image_path, then rmdir directories bottom-up."""
        top = self.host(image_path)
        if os.path.islink(top) or os.path.isfile(top):
            self.bytes_deleted += os.lstat(top).st_size
            self.cmds.append("rm %s" % image_path)
            return
        dirs = []
        for dirpath, dirnames, filenames in os.walk(top):
            dirnames.sort()
            rel = os.path.relpath(dirpath, self.rootfs)
            dirs.append("/" + rel)
            for fn in sorted(filenames) + sorted(d for d in dirnames if os.path.islink(os.path.join(dirpath, d))):
                st = os.lstat(os.path.join(dirpath, fn))
                self.bytes_deleted += st.st_size if stat.S_ISREG(st.st_mode) else 0
                self.cmds.append("rm /%s/%s" % (rel, fn))
        for d in reversed(dirs):
            self.cmds.append("rmdir %s" % d)

    # -- synthetic content ---------------------------------------------------

    def log_lines(self, nbytes, kind):
        """Plausible log text: repetitive like real logs, but not constant."""
        hosts = ["vm-bench"]
        units = ["systemd[1]", "sshd[812]", "cron[455]", "kernel", "dhclient[377]",
                 "apt-daily.service", "systemd-logind[430]", "rsyslogd[401]"]
        msgs = ["Started Session %d of user user.", "Accepted publickey for user from 10.0.%d.%d port %d ssh2",
                "pam_unix(cron:session): session opened for user root(uid=0) by (uid=0)",
                "Finished Daily apt download activities.", "DHCPACK of 10.0.%d.%d from 10.0.0.1",
                "EXT4-fs (vda): mounted filesystem with ordered data mode. Quota mode: none.",
                "Reached target Timers.", "Starting Rotate log files...",
                "Received disconnect from 10.0.%d.%d port %d:11: disconnected by user"]
        pkgs = ["libssl3", "openssl", "tzdata", "curl", "libcurl4", "git", "vim-common", "python3.11",
                "linux-image-6.1.0-21-amd64", "systemd", "libc6", "perl-base"]
        out = []
        size = 0
        t = 0
        rng = self.rng
        while size < nbytes:
            t += rng.randint(1, 90)
            stamp = "2025-01-%02d %02d:%02d:%02d" % (2 + t // 86400 % 27, t // 3600 % 24, t // 60 % 60, t % 60)
            if kind == "dpkg":
                p = rng.choice(pkgs)
                v = "%d.%d.%d-%d+deb12u%d" % (rng.randint(0, 9), rng.randint(0, 40), rng.randint(0, 20),
                                              rng.randint(1, 5), rng.randint(1, 9))
                line = "%s %s %s:amd64 %s\n" % (stamp, rng.choice(["status unpacked", "status half-configured",
                                                                  "status installed", "configure", "upgrade"]), p, v)
            else:
                m = rng.choice(msgs)
                nargs = m.count("%d")
                m = m % tuple(rng.randint(1, 60000) for _ in range(nargs))
                line = "%s %s %s: %s\n" % (stamp, hosts[0], rng.choice(units), m)
            out.append(line)
            size += len(line)
        return "".join(out).encode()[:nbytes]

    def text_like(self, nbytes):
        """Database-ish records: compressible, but unique per record."""
        words = "alpha beta gamma delta user session token cache index value order item price stock".split()
        out = bytearray()
        i = 0
        while len(out) < nbytes:
            i += 1
            rec = "%08d|%s|%s|%d|%016x\n" % (i, self.rng.choice(words), self.rng.choice(words),
                                             self.rng.randint(0, 10**6), self.rng.getrandbits(64))
            out += rec.encode()
        return bytes(out[:nbytes])

    # -- the three kinds of churn ---------------------------------------------

    def new_files(self):
        user = (USER_UID, USER_GID)
        for d in ["/home/user", "/home/user/project", "/home/user/project/src", "/home/user/Downloads"]:
            self.mkdir(d, owner=user)
        for d in ["/opt/app", "/opt/app/bin", "/var/lib/app"]:
            self.mkdir(d)

        # A source checkout: edited copies of Python stdlib modules (~2 MiB of text).
        pydir = next((os.path.join(self.rootfs, "usr/lib", d) for d in sorted(os.listdir(self.host("/usr/lib")))
                      if d.startswith("python3.") and os.path.isdir(self.host("/usr/lib/" + d))), None)
        total = 0
        if pydir:
            mods = sorted(f for f in os.listdir(pydir) if f.endswith(".py"))
            self.rng.shuffle(mods)
            for i, m in enumerate(mods):
                if total >= 2 * MiB:
                    break
                with open(os.path.join(pydir, m), "rb") as f:
                    lines = f.read().splitlines(keepends=True)
                # An "edit": a header plus a few lines changed.
                for _ in range(max(1, len(lines) // 50)):
                    j = self.rng.randrange(len(lines) or 1)
                    if lines:
                        lines[j] = b"# edited: %d\n" % self.rng.getrandbits(32) + lines[j]
                data = b"# project module %d\n" % i + b"".join(lines)
                self.write("/home/user/project/src/mod%03d_%s" % (i, m), data, owner=user)
                total += len(data)
        self.summary.append("new: project source %d KiB" % (total // 1024))

        # A downloaded, already compressed archive: incompressible.
        self.write("/home/user/Downloads/dataset.tar.zst", self.rng.randbytes(3 * MiB), owner=user)
        self.summary.append("new: incompressible download 3072 KiB")

        # A newly installed application binary: the largest ELF under /usr/bin, patched.
        best = None
        for name in sorted(os.listdir(self.host("/usr/bin"))):
            p = self.host("/usr/bin/" + name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            sz = os.path.getsize(p)
            if sz <= 6 * MiB and (best is None or sz > best[0]):
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        best = (sz, p)
        if best:
            data = bytearray(open(best[1], "rb").read())
            for off in range(0, len(data) - 4096, 256 * 1024):
                data[off + 2048:off + 2048 + 64] = self.rng.randbytes(64)
            self.write("/opt/app/bin/app", bytes(data), mode=0o755)
            self.summary.append("new: app binary %d KiB (patched copy of %s)"
                                % (len(data) // 1024, os.path.relpath(best[1], self.rootfs)))

        self.write("/var/lib/app/state.db", self.text_like(1 * MiB), mode=0o640)
        self.write("/var/log/syslog", self.log_lines(1536 * 1024, "syslog"), mode=0o640)
        self.summary.append("new: state.db 1024 KiB, syslog 1536 KiB")

    def replace(self, path, data):
        """Atomically replaces an existing file with new content.

        debugfs cannot append or rewrite in place, so the new version is
        written under a temporary name and renamed over the old one (what
        dpkg/logrotate do): the new blocks are allocated before the old ones
        are freed, as with a live filesystem's delayed allocation.
        """
        h = self.host(path)
        parent, name = os.path.split(path)
        tmp = "%s/.%s.new" % (parent, name)
        self.write(tmp, data, mode=stat.S_IMODE(os.stat(h).st_mode))
        self.cmds.append("rm %s" % path)
        # debugfs ln/unlink leave link counts alone: together, a rename.
        self.cmds.append("ln %s %s" % (tmp, path))
        self.cmds.append("unlink %s" % tmp)

    def appended_logs(self):
        for path, kind, extra in [("/var/log/dpkg.log", "dpkg", 256 * 1024),
                                  ("/var/log/alternatives.log", "syslog", 32 * 1024)]:
            h = self.host(path)
            if not os.path.isfile(h) or os.path.islink(h):
                continue
            with open(h, "rb") as f:
                self.replace(path, f.read() + self.log_lines(extra, kind))
            self.summary.append("appended: %s +%d KiB" % (path, extra // 1024))
        if os.path.isdir(self.host("/var/log/apt")):
            self.write("/var/log/apt/history.log", self.log_lines(64 * 1024, "dpkg"))
            self.write("/var/log/apt/term.log", self.log_lines(128 * 1024, "syslog"))
            self.summary.append("new: /var/log/apt/{history,term}.log 192 KiB")

    def deletions(self):
        before = self.bytes_deleted
        # logrotate: bootstrap.log -> bootstrap.log.1.gz
        log = "/var/log/bootstrap.log"
        if os.path.isfile(self.host(log)):
            with open(self.host(log), "rb") as f:
                self.write(log + ".1.gz", gzip.compress(f.read(), mtime=0))
            self.delete_tree(log)
        # debconf's backups, rewritten by every apt run.
        for p in ["/var/cache/debconf/templates.dat-old", "/var/cache/debconf/config.dat-old"]:
            if os.path.isfile(self.host(p)):
                self.delete_tree(p)
        # `apt-get purge` of one package: its files, its dpkg metadata, and
        # the dpkg status database rewritten without its entry.
        pkg = REMOVED_PACKAGE
        info = self.host("/var/lib/dpkg/info")
        listing = os.path.join(info, pkg + ".list")
        if os.path.isfile(listing):
            # dpkg records the removal in its status database first.
            with open(self.host("/var/lib/dpkg/status"), "rb") as f:
                stanzas = f.read().split(b"\n\n")
            kept = [st for st in stanzas if not st.startswith(b"Package: %s\n" % pkg.encode())]
            self.replace("/var/lib/dpkg/status", b"\n\n".join(kept))
            with open(listing) as f:
                paths = [ln.rstrip("\n") for ln in f if ln.strip()]
            for p in paths:
                h = self.host(p)
                if os.path.islink(h) or os.path.isfile(h):
                    self.delete_tree(p)
            # The package's own directories (all their entries belong to it),
            # deepest first; shared ones such as /usr/bin stay.
            owned = set(paths)
            for p in sorted(paths, reverse=True):
                h = self.host(p)
                if (os.path.isdir(h) and not os.path.islink(h)
                        and all(os.path.join(p, c) in owned for c in os.listdir(h))):
                    self.cmds.append("rmdir %s" % p)
            for fn in sorted(os.listdir(info)):
                if fn.startswith(pkg + "."):
                    self.delete_tree("/var/lib/dpkg/info/" + fn)
            self.summary.append("purged package %s (%d paths)" % (pkg, len(paths)))
        self.summary.append("deleted: %d KiB (rotated log, debconf backups, purged package)"
                            % ((self.bytes_deleted - before) // 1024))


def cmd_churn(args):
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    c = Churn(args.rootfs, args.out, args.seed)
    # Deletions come last: debugfs's allocator takes the first free block, so
    # deleting first would scatter the new data over hundreds of small holes
    # (and touch far more 4 MiB blocks than the ~1% of data that changed).
    c.appended_logs()
    c.new_files()
    c.deletions()
    with open(os.path.join(args.out, "debugfs.cmds"), "w") as f:
        f.write("\n".join(c.cmds) + "\n")
    for s in c.summary:
        print("  churn " + s)
    print("  churn total: %.1f MiB written, %.1f MiB deleted, %d debugfs commands"
          % (c.bytes_new / MiB, c.bytes_deleted / MiB, len(c.cmds)))


# --------------------------------------------------------------------------
# blockdiff
# --------------------------------------------------------------------------

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


def data_blocks(fd, size, bs):
    """Set of block indexes that hold allocated data (via SEEK_DATA/SEEK_HOLE)."""
    blocks = set()
    for start, end in data_extents(fd, size):
        blocks.update(range(start // bs, (end - 1) // bs + 1))
    return blocks


def cmd_blockdiff(args):
    bs = args.block_size
    size = os.path.getsize(args.a)
    if os.path.getsize(args.b) != size:
        sys.exit("blockdiff: sizes differ")
    with open(args.a, "rb", buffering=0) as fa, open(args.b, "rb", buffering=0) as fb:
        alloc = sorted(data_blocks(fa.fileno(), size, bs) | data_blocks(fb.fileno(), size, bs))
        changed = 0
        changed_4k = 0
        for blk in alloc:
            a = os.pread(fa.fileno(), bs, blk * bs)
            b = os.pread(fb.fileno(), bs, blk * bs)
            if a != b:
                changed += 1
                changed_4k += sum(1 for i in range(0, len(a), 4096) if a[i:i + 4096] != b[i:i + 4096])
    alloc_bytes = max(os.stat(args.a).st_blocks, os.stat(args.b).st_blocks) * 512
    print("blocks_total=%d" % ((size + bs - 1) // bs))
    print("blocks_allocated=%d" % len(alloc))
    print("blocks_changed=%d" % changed)
    print("changed_pct_of_allocated_blocks=%.2f" % (100.0 * changed / max(1, len(alloc))))
    print("changed_bytes_at_block_granularity=%d" % (changed * bs))
    print("changed_pct_of_allocated_bytes=%.2f" % (100.0 * changed * bs / max(1, alloc_bytes)))
    print("changed_4k_bytes=%d" % (changed_4k * 4096))
    print("changed_4k_pct_of_allocated_bytes=%.2f" % (100.0 * changed_4k * 4096 / max(1, alloc_bytes)))
    print("gen0 -> gen1: %d of %d allocated %d KiB blocks changed (%.2f%% of allocated blocks; %d MiB = %.2f%% "
          "of allocated bytes; %.2f%% counted in 4 KiB blocks)"
          % (changed, len(alloc), bs // 1024, 100.0 * changed / max(1, len(alloc)), changed * bs // MiB,
             100.0 * changed * bs / max(1, alloc_bytes), 100.0 * changed_4k * 4096 / max(1, alloc_bytes)))


def cmd_pagediff(args):
    import json
    sizes = [int(x) for x in args.block_sizes.split(",")]
    step = 4 * MiB  # compared whole first; pages only where it differs
    size = os.path.getsize(args.a)
    if os.path.getsize(args.b) != size:
        sys.exit("pagediff: sizes differ")
    pages = []
    with open(args.a, "rb", buffering=0) as fa, open(args.b, "rb", buffering=0) as fb:
        alloc = sorted(data_blocks(fa.fileno(), size, step) | data_blocks(fb.fileno(), size, step))
        for blk in alloc:
            a = os.pread(fa.fileno(), step, blk * step)
            b = os.pread(fb.fileno(), step, blk * step)
            if a != b:
                base = blk * step // 4096
                pages.extend(base + i // 4096 for i in range(0, len(a), 4096) if a[i:i + 4096] != b[i:i + 4096])
    print(json.dumps({
        "pages_changed": len(pages),
        "bytes_changed": len(pages) * 4096,
        "allocated_bytes": os.stat(args.b).st_blocks * 512,
        "blocks_touched": {str(bs): len({p * 4096 // bs for p in pages}) for bs in sizes},
    }))


# --------------------------------------------------------------------------
# warm
# --------------------------------------------------------------------------

def warm_file(path, buf):
    """Reads the data extents of one file; returns the number of bytes read."""
    total = 0
    with open(path, "rb", buffering=0) as f:
        fd = f.fileno()
        for start, end in data_extents(fd, os.fstat(fd).st_size):
            off = start
            while off < end:
                n = os.preadv(fd, [memoryview(buf)[:min(len(buf), end - off)]], off)
                if n == 0:  # file shrank under us
                    break
                off += n
                total += n
    return total


def cmd_warm(args):
    buf = bytearray(4 * MiB)
    total = files = 0
    for p in args.paths:
        if not os.path.exists(p):
            sys.exit("warm: no such file or directory: %s" % p)
        if os.path.isdir(p):
            paths = (os.path.join(d, fn) for d, _, fns in os.walk(p) for fn in sorted(fns))
        else:
            paths = [p]
        for fp in paths:
            if os.path.isfile(fp) and not os.path.islink(fp):
                total += warm_file(fp, buf)
                files += 1
    print("warm: %d file(s), %.1f MiB of data read" % (files, total / MiB), file=sys.stderr)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("churn")
    p.add_argument("--rootfs", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--seed", type=int, default=20250101)
    p.set_defaults(func=cmd_churn)
    p = sub.add_parser("blockdiff")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--block-size", type=int, default=4 * MiB)
    p.set_defaults(func=cmd_blockdiff)
    p = sub.add_parser("pagediff")
    p.add_argument("a")
    p.add_argument("b")
    p.add_argument("--block-sizes", default=str(4 * MiB))
    p.set_defaults(func=cmd_pagediff)
    p = sub.add_parser("warm")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.set_defaults(func=cmd_warm)
    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
