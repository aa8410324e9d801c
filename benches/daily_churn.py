#!/usr/bin/env python3
"""Daily churn for benches/gc-verify.sh: day N of a VM whose day 1 is gen1.img.

  daily_churn.py --rootfs DIR --image IMG --out DIR --day N [--seed S]

Writes --out/debugfs.cmds (and its payload files) that turn IMG, the image
as it stands after day N-1, into the image of day N. Day 1 is
benches/make-image.sh's churn (gen0 -> gen1, bench_image.py's Churn); this is
the same model run as a steady state, with the same content generators
(Churn.log_lines, Churn.text_like, Churn.write) and the same constraints
(debugfs cannot append, so a grown file is written whole and renamed over the
old one; deletions come last):

  - logs appended: dpkg.log +256 KiB, alternatives.log +32 KiB,
    apt/history.log +64 KiB, apt/term.log +128 KiB; rotated every 30 days
    (gzipped under a dated name, restarted empty), as Debian's logrotate does;
  - syslog: a new day of 1.5 MiB; yesterday's is kept gzipped under a dated
    name for 7 days (rsyslog's daily rotation);
  - the project checkout: each module edited with probability 1/4 (a few
    lines changed, as on day 1), ~0.5 MiB of source;
  - a new 3 MiB incompressible download; the one from 7 days ago deleted;
  - state.db rewritten (1 MiB of new records); the app binary upgraded
    (re-patched) once a week.

The files' current contents are read from IMG with `debugfs dump`, so a day
depends only on the image it is applied to and (rootfs, seed, day).
Standard library only; imports bench_image.py from the same directory.
"""

import argparse
import gzip
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_image import MiB, USER_GID, USER_UID, Churn  # noqa: E402

USER = (USER_UID, USER_GID)
# (path, kind of log_lines, bytes appended per day)
APPENDED = [
    ("/var/log/dpkg.log", "dpkg", 256 * 1024),
    ("/var/log/alternatives.log", "syslog", 32 * 1024),
    ("/var/log/apt/history.log", "dpkg", 64 * 1024),
    ("/var/log/apt/term.log", "syslog", 128 * 1024),
]
SRC = "/home/user/project/src"


def dated(day):
    """The calendar date of a day of the lineage (day 1 = gen1 = 2025-01-02)."""
    import datetime
    return (datetime.date(2025, 1, 1) + datetime.timedelta(days=day)).strftime("%Y%m%d")


def download(day):
    return "/home/user/Downloads/" + ("dataset.tar.zst" if day == 1 else "dataset-%s.tar.zst" % dated(day))


def dump(image, out):
    """Copies the churned files out of the image: {image path: bytes}, and the project's modules."""
    cur = os.path.join(out, "cur")
    os.makedirs(cur)
    cmds = ["dump %s %s/%d" % (p, cur, i) for i, (p, _, _) in enumerate(APPENDED)]
    cmds.append("dump /var/log/syslog %s/syslog" % cur)
    cmds.append("rdump %s %s" % (SRC, cur))
    script = os.path.join(out, "dump.cmds")
    with open(script, "w") as f:
        f.write("\n".join(cmds) + "\n")
    r = subprocess.run(["debugfs", "-f", script, image], capture_output=True, text=True)
    errs = [ln for ln in r.stderr.splitlines() if ln and not ln.startswith("debugfs ")]
    if r.returncode or errs:
        sys.exit("daily_churn: debugfs dump failed:\n" + "\n".join(errs))
    files = {}
    for i, (p, _, _) in enumerate(APPENDED):
        with open("%s/%d" % (cur, i), "rb") as f:
            files[p] = f.read()
    with open(cur + "/syslog", "rb") as f:
        files["/var/log/syslog"] = f.read()
    mods = {}
    for name in sorted(os.listdir(cur + "/src")):
        with open(os.path.join(cur, "src", name), "rb") as f:
            mods[name] = f.read()
    return files, mods


def replace(c, path, data, mode, owner=None):
    """Churn.replace for a file that may not exist in the rootfs tree (mode given)."""
    parent, name = os.path.split(path)
    tmp = "%s/.%s.new" % (parent, name)
    c.write(tmp, data, mode=mode, owner=owner)
    c.cmds.append("rm %s" % path)
    c.cmds.append("ln %s %s" % (tmp, path))
    c.cmds.append("unlink %s" % tmp)


def day_churn(c, day, files, mods):
    deletions = []
    # Appended logs, rotated monthly.
    for path, kind, extra in APPENDED:
        old = files[path]
        if day % 30 == 0:
            c.write("%s.%s.gz" % (path, dated(day)), gzip.compress(old, mtime=0))
            old = b""
        replace(c, path, old + c.log_lines(extra, kind), 0o644)
    # syslog: yesterday's rotated (kept 7 days), a new day written.
    c.write("/var/log/syslog-%s.gz" % dated(day - 1), gzip.compress(files["/var/log/syslog"], mtime=0),
            mode=0o640)
    replace(c, "/var/log/syslog", c.log_lines(1536 * 1024, "syslog"), 0o640)
    if day - 8 >= 1:
        deletions.append("/var/log/syslog-%s.gz" % dated(day - 8))
    # The project: a quarter of the modules edited, as on day 1.
    edited = 0
    for name, data in mods.items():
        if c.rng.random() >= 0.25:
            continue
        lines = data.splitlines(keepends=True)
        for _ in range(max(1, len(lines) // 50)):
            j = c.rng.randrange(len(lines) or 1)
            if lines:
                lines[j] = b"# edited: %d\n" % c.rng.getrandbits(32) + lines[j]
        replace(c, "%s/%s" % (SRC, name), b"".join(lines), 0o644, owner=USER)
        edited += len(data)
    c.summary.append("project: %d KiB of modules edited" % (edited // 1024))
    # A new download; the one from a week ago goes.
    c.write(download(day), c.rng.randbytes(3 * MiB), owner=USER)
    if day - 7 >= 1:
        deletions.append(download(day - 7))
    # The application's database rewritten; its binary upgraded weekly.
    replace(c, "/var/lib/app/state.db", c.text_like(1 * MiB), 0o640)
    if day % 7 == 3:
        best = None
        for name in sorted(os.listdir(c.host("/usr/bin"))):
            p = c.host("/usr/bin/" + name)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            sz = os.path.getsize(p)
            if sz <= 6 * MiB and (best is None or sz > best[0]):
                with open(p, "rb") as f:
                    if f.read(4) == b"\x7fELF":
                        best = (sz, p)
        data = bytearray(open(best[1], "rb").read())
        for off in range(0, len(data) - 4096, 256 * 1024):
            data[off + 2048:off + 2048 + 64] = c.rng.randbytes(64)
        replace(c, "/opt/app/bin/app", bytes(data), 0o755)
        c.summary.append("app binary upgraded")
    # Deletions last (see bench_image.py's cmd_churn).
    for p in deletions:
        c.cmds.append("rm %s" % p)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rootfs", required=True)
    ap.add_argument("--image", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--day", type=int, required=True)
    ap.add_argument("--seed", type=int, default=20250101)
    args = ap.parse_args()
    if args.day < 2:
        sys.exit("daily_churn: day 1 is gen1.img (make-image.sh); days start at 2")
    if os.path.isdir(args.out):
        shutil.rmtree(args.out)
    os.makedirs(args.out)
    files, mods = dump(args.image, args.out)
    c = Churn(args.rootfs, args.out, args.seed * 1000 + args.day)
    day_churn(c, args.day, files, mods)
    shutil.rmtree(os.path.join(args.out, "cur"))
    with open(os.path.join(args.out, "debugfs.cmds"), "w") as f:
        f.write("\n".join(c.cmds) + "\n")
    print("day %d: %.1f MiB written, %d debugfs commands; %s"
          % (args.day, c.bytes_new / MiB, len(c.cmds), "; ".join(c.summary)))


if __name__ == "__main__":
    main()
