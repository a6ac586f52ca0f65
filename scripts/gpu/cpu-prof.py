#!/usr/bin/env python3
"""Flat CPU profile per thread from cpu-prof.c's samples (a profiling aid for probe.sh).

    cpu-prof.py PREFIX.<pid>.bin [FROM_S TO_S]

Symbolizes every sampled program counter with addr2line (writing PREFIX.<pid>.syms, "pc
function" lines, for later analysis elsewhere) and prints, per thread with samples, its
sample count and its 25 hottest functions. FROM_S/TO_S: only samples in that window, in
seconds after the first sample.
"""
import bisect
import collections
import struct
import subprocess
import sys


def load_segments(path):
    """(p_offset, p_vaddr, p_filesz) of an ELF file's loadable segments: a file offset is
    turned into the address addr2line wants through them."""
    try:
        with open(path, "rb") as f:
            h = f.read(64)
            if h[:4] != b"\x7fELF" or h[4] != 2:
                return []
            phoff = struct.unpack_from("<Q", h, 32)[0]
            phentsize, phnum = struct.unpack_from("<HH", h, 54)
            f.seek(phoff)
            ph = f.read(phentsize * phnum)
    except OSError:
        return []
    segs = []
    for i in range(phnum):
        p_type, _, p_offset, p_vaddr, _, p_filesz = struct.unpack_from("<IIQQQQ", ph, i * phentsize)
        if p_type == 1:
            segs.append((p_offset, p_vaddr, p_filesz))
    return segs


def to_vaddr(segs, off):
    for p_offset, p_vaddr, p_filesz in segs:
        if p_offset <= off < p_offset + p_filesz:
            return off - p_offset + p_vaddr
    return off


def main():
    path = sys.argv[1]
    base = path[:-4]
    raw = open(path, "rb").read()
    n = len(raw) // 24
    samples = []
    for i in range(n):
        tid = int.from_bytes(raw[i * 24:i * 24 + 4], "little")
        pc = int.from_bytes(raw[i * 24 + 8:i * 24 + 16], "little")
        t = int.from_bytes(raw[i * 24 + 16:i * 24 + 24], "little")
        samples.append((tid, pc, t))
    if not samples:
        print(f"{path}: no samples")
        return
    t0 = min(s[2] for s in samples)
    if len(sys.argv) > 3:
        lo, hi = float(sys.argv[2]) * 1e9 + t0, float(sys.argv[3]) * 1e9 + t0
        samples = [s for s in samples if lo <= s[2] < hi]
    maps = []
    for line in open(base + ".maps"):
        parts = line.split()
        if len(parts) < 6 or "x" not in parts[1]:
            continue
        a, b = (int(x, 16) for x in parts[0].split("-"))
        maps.append((a, b, int(parts[2], 16), parts[5]))
    maps.sort()
    starts = [m[0] for m in maps]
    by_file = collections.defaultdict(set)
    where = {}
    for _, pc, _ in samples:
        if pc in where:
            continue
        i = bisect.bisect_right(starts, pc) - 1
        if i >= 0 and maps[i][0] <= pc < maps[i][1]:
            off = pc - maps[i][0] + maps[i][2]
            where[pc] = (maps[i][3], off)
            by_file[maps[i][3]].add(off)
        else:
            where[pc] = ("?", pc)
    names = {}
    for f, offs in by_file.items():
        offs = sorted(offs)
        short = f.rsplit("/", 1)[-1]
        segs = load_segments(f)
        try:
            res = subprocess.run(["addr2line", "-f", "-C", "-e", f],
                                 input="\n".join(hex(to_vaddr(segs, o)) for o in offs),
                                 capture_output=True, text=True, timeout=300)
            lines = res.stdout.splitlines()
            fns = lines[0::2]
        except (OSError, subprocess.SubprocessError):
            fns = []
        for k, o in enumerate(offs):
            fn = fns[k] if k < len(fns) and fns[k] != "??" else hex(o)
            names[(f, o)] = f"{short}:{fn}"
    with open(base + ".syms", "w") as out:
        for pc, w in where.items():
            out.write(f"{pc:x} {names.get(w, w[0] + ':' + hex(w[1]))}\n")
    threads = {}
    try:
        for line in open(base + ".threads"):
            tid, _, name = line.strip().partition(" ")
            threads[int(tid)] = name
    except OSError:
        pass
    per = collections.defaultdict(collections.Counter)
    for tid, pc, _ in samples:
        w = where[pc]
        per[tid][names.get(w, w[0] + ":" + hex(w[1]))] += 1
    span = (max(s[2] for s in samples) - min(s[2] for s in samples)) / 1e9 if samples else 0
    print(f"{path}: {len(samples)} samples over {span:.1f} s")
    for tid, c in sorted(per.items(), key=lambda kv: -sum(kv[1].values()))[:6]:
        total = sum(c.values())
        print(f"thread {tid} {threads.get(tid, '?')}: {total} samples")
        for fn, k in c.most_common(25):
            print(f"  {100 * k / total:5.1f}%  {fn[:150]}")


if __name__ == "__main__":
    main()
