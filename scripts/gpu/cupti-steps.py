#!/usr/bin/env python3
"""Per-step GPU timeline from a cupti-trace.c trace (a profiling aid for scripts/gpu/probe.sh).

    cupti-steps.py TRACE.<pid>.bin [LOGITS_BYTES]

A decode step of the 64 x (256+128) burst ends with one device-to-host copy of its logits
(64 rows x 49,152 floats by default). Between the ends of two such copies, it reports per step
(medians over the steps): the period, the GPU's busy time (kernels, copies, memsets merged),
the GPU's idle time before the step's first activity ("head") and inside the step, when the
host made its first CUDA call and its first and last kernel launch, and the kernels by time.
"""
import sys
from collections import defaultdict

import numpy as np

REC = np.dtype([("kind", "u1"), ("ck", "u1"), ("pad", "u2"), ("id", "u4"),
                ("start", "u8"), ("end", "u8"), ("bytes", "u8")])
DTOH = 2


def main():
    path = sys.argv[1]
    logits_bytes = int(sys.argv[2]) if len(sys.argv) > 2 else 64 * 49152 * 4
    base = path[:-4] if path.endswith(".bin") else path
    r = np.fromfile(path, dtype=REC)
    names = open(base + ".names").read().splitlines()
    api = {}
    for line in open(base + ".api"):
        k, _, v = line.strip().partition(" ")
        api[int(k)] = v
    gpu = r[(r["kind"] >= 1) & (r["kind"] <= 3)]
    gpu = gpu[np.argsort(gpu["start"])]
    calls = r[r["kind"] == 4]
    calls = calls[np.argsort(calls["start"])]
    logits = r[(r["kind"] == 2) & (r["ck"] == DTOH) & (r["bytes"] == logits_bytes)]
    ends = np.sort(logits["end"])
    print(f"{path}: {len(r)} records, {len(gpu)} on the GPU, {len(calls)} runtime calls, "
          f"{len(ends)} logits copies of {logits_bytes} bytes")
    if len(ends) < 3:
        return
    launch_ids = {k for k, v in api.items() if "Launch" in v}
    rows = []
    groups = []  # per burst (steps less than 100 ms apart): [steps, GPU time by kernel]
    per_kernel = defaultdict(float)
    gaps = defaultdict(lambda: [0, 0.0])
    for a, b in zip(ends[:-1], ends[1:]):
        if b - a > 100e6:  # not consecutive steps of one burst
            groups.append([0, defaultdict(float), []])
            continue
        if not groups:
            groups.append([0, defaultdict(float), []])
        i0 = np.searchsorted(gpu["start"], a)
        i1 = np.searchsorted(gpu["start"], b)
        seg = gpu[i0:i1]
        if len(seg) == 0:
            continue
        busy = 0
        cur_s, cur_e = int(seg["start"][0]), int(min(seg["end"][0], b))
        prev_end_name = "(step start)"
        last_name = names[seg["id"][0]] if seg["kind"][0] == 1 else "copy"
        for s, e, kind, kid in zip(seg["start"][1:], seg["end"][1:], seg["kind"][1:], seg["id"][1:]):
            s, e = int(s), int(min(e, b))
            name = names[kid] if kind == 1 else ("copy" if kind == 2 else "memset")
            if s > cur_e:
                busy += cur_e - cur_s
                gap = s - cur_e
                if gap > 5000:
                    g = gaps[(last_name[:40], name[:40])]
                    g[0] += 1
                    g[1] += gap
                cur_s, cur_e = s, e
            else:
                cur_e = max(cur_e, e)
            last_name = name
        busy += cur_e - cur_s
        groups[-1][0] += 1
        groups[-1][2].append(b - a)
        for s, e, kind, kid in zip(seg["start"], seg["end"], seg["kind"], seg["id"]):
            name = names[kid] if kind == 1 else ("copy" if kind == 2 else "memset")
            per_kernel[name] += (min(int(e), b) - int(s))
            groups[-1][1][name] += (min(int(e), b) - int(s))
        j0 = np.searchsorted(calls["start"], a)
        j1 = np.searchsorted(calls["start"], b)
        cseg = calls[j0:j1]
        launches = cseg[np.isin(cseg["id"], list(launch_ids))]
        first_call = (int(cseg["start"][0]) - a) if len(cseg) else np.nan
        first_launch = (int(launches["start"][0]) - a) if len(launches) else np.nan
        last_launch = (int(launches["end"][-1]) - a) if len(launches) else np.nan
        head = int(seg["start"][0]) - a
        period = b - a
        rows.append((period, busy, head, period - busy - head, first_call, first_launch,
                     last_launch, int((seg["kind"] == 1).sum()), len(launches)))
    if not rows:
        return
    m = np.array(rows, dtype=float)
    n = len(m)
    med = np.nanmedian(m, axis=0) / 1e3
    mean = np.nanmean(m, axis=0) / 1e3
    cols = ["period", "gpu busy", "idle head", "idle inside", "host 1st call", "1st launch",
            "last launch end", "kernels", "launch calls"]
    print(f"{n} steps; medians (means) in microseconds, counts as counts:")
    for c, x, y in zip(cols, med, mean):
        if c in ("kernels", "launch calls"):
            x, y = x * 1e3, y * 1e3
        print(f"  {c:16s} {x:10.1f} ({y:.1f})")
    print("GPU time per step by kernel (microseconds, top 20):")
    for k, v in sorted(per_kernel.items(), key=lambda kv: -kv[1])[:20]:
        print(f"  {v / n / 1e3:9.1f}  {k[:110]}")
    print("idle gaps over 5 us inside steps, by the kernels around them (top 15):")
    for (x, y), (cnt, tot) in sorted(gaps.items(), key=lambda kv: -kv[1][1])[:15]:
        print(f"  {tot / n / 1e3:8.1f} us/step  {cnt / n:6.2f}/step  {x} -> {y}")
    top = [k for k, _ in sorted(per_kernel.items(), key=lambda kv: -kv[1])[:6]]
    print("per burst: steps, median period, GPU time per step of the top kernels (microseconds):")
    for n_steps, by, periods in groups:
        if n_steps < 20:
            continue
        cells = "  ".join(f"{by[k] / n_steps / 1e3:7.1f} {k[:24]}" for k in top)
        print(f"  {n_steps:4d} {np.median(periods) / 1e3:8.1f}  {cells}")
    spent = defaultdict(float)
    counted = defaultdict(int)
    lo, hi = ends[0], ends[-1]
    j0, j1 = np.searchsorted(calls["start"], lo), np.searchsorted(calls["start"], hi)
    for c in calls[j0:j1]:
        spent[int(c["id"])] += int(c["end"]) - int(c["start"])
        counted[int(c["id"])] += 1
    print("host runtime calls in the steps (microseconds per step, calls per step):")
    for k, v in sorted(spent.items(), key=lambda kv: -kv[1])[:10]:
        print(f"  {v / n / 1e3:9.1f} {counted[k] / n:7.1f}  {api.get(k, k)}")


if __name__ == "__main__":
    main()
