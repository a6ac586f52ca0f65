#!/usr/bin/env python3
"""The GPU issue's targets for one model, from one run's files (run by bench.sh):

    targets.py OUT MODEL

reads OUT/MODEL-ref.txt (llama-bench tg128 and llama-batched-bench), OUT/MODEL-ref64.txt
(batched-bench's 64-sequence shape again, several times), OUT/MODEL-hyperllama.json and
OUT/MODEL-hyperllama-c64.json (the sweep's c=64 level again, with other prompts) and
OUT/MODEL-llama-server.json, and prints a markdown table: each target with both sides' numbers,
the ratio and whether it is met. The 64-stream target takes the median of every measurement of
that shape on each side (batched-bench: 64 x 128 tokens over its total time, prompts included;
HyperLlama: output tokens over the bench's wall time).
"""
import json
import re
import statistics
import sys


def bb_rows(path):
    """(B, T seconds) of every batched-bench row in the file."""
    rows = []
    try:
        for line in open(path):
            cells = [c.strip() for c in line.strip().strip("|").split("|")]
            if len(cells) == 10 and cells[0].isdigit():
                rows.append((int(cells[2]), float(cells[8]), int(cells[1])))
    except OSError:
        pass
    return rows


def tg128(path):
    try:
        for line in open(path):
            if "tg128" in line:
                m = re.search(r"\|\s*([0-9.]+) ± [0-9.]+\s*\|\s*$", line)
                if m:
                    return float(m.group(1))
    except OSError:
        pass
    return None


def results(path):
    try:
        return json.load(open(path))["results"]
    except (OSError, ValueError, KeyError):
        return []


def fmt(x, digits=0):
    return "–" if x is None else f"{x:,.{digits}f}"


def verdict(value, test):
    """Whether `value` meets its target: "yes", "no", or "–" when it was not measured."""
    return "–" if value is None else ("yes" if test(value) else "no")


def main():
    out, m = sys.argv[1], sys.argv[2]
    ref = f"{out}/{m}-ref.txt"
    hl = results(f"{out}/{m}-hyperllama.json") + results(f"{out}/{m}-hyperllama-c64.json")
    ls = results(f"{out}/{m}-llama-server.json")
    rows = []

    single = next((r for r in hl if r["workload"] == "single"), None)
    hl_single = single["extras"].get("decode_tok_s") if single else None
    ref_tg = tg128(ref)
    ratio = hl_single / ref_tg if hl_single and ref_tg else None
    rows.append(("single stream, decode tok/s (llama-bench tg128)", fmt(ref_tg, 1),
                 fmt(hl_single, 1), ratio, ">= 0.95x", verdict(ratio, lambda r: r >= 0.95)))

    bb = [8192 * 1.0 / t for b, t, ntg in bb_rows(ref) + bb_rows(f"{out}/{m}-ref64.txt")
          if b == 64 and ntg == 128 and t > 0]
    ours = [r["output_tok_s"] for r in hl
            if r["workload"] == "sweep" and r.get("concurrency") == 64 and r.get("errors") == 0]
    bb_med = statistics.median(bb) if bb else None
    hl_med = statistics.median(ours) if ours else None
    spread = lambda xs: f" ({len(xs)} runs, {min(xs):,.0f}–{max(xs):,.0f})" if xs else ""
    ratio = hl_med / bb_med if hl_med and bb_med else None
    rows.append(("64 x (256 + 128), output tok/s over wall time, median (llama-batched-bench)",
                 fmt(bb_med) + spread(bb), fmt(hl_med) + spread(ours), ratio, ">= 1.0x",
                 verdict(ratio, lambda r: r >= 1.0)))

    sp_hl = next((r for r in hl if r["workload"] == "shared-prefix"), None)
    sp_ls = next((r for r in ls if r["workload"] == "shared-prefix"), None)
    a = sp_ls["output_tok_s"] if sp_ls else None
    b = sp_hl["output_tok_s"] if sp_hl else None
    ratio = b / a if a and b else None
    rows.append(("shared 1,000-token prompt, 64 users, tok/s (llama-server -np 64)", fmt(a), fmt(b),
                 ratio, ">= 1.5x", verdict(ratio, lambda r: r >= 1.5)))
    p99 = sp_hl["ttft_ms"]["p99"] if sp_hl else None
    p99_ls = sp_ls["ttft_ms"]["p99"] if sp_ls else None
    rows.append(("shared prompt, TTFT p99 ms (llama-server -np 64)", fmt(p99_ls), fmt(p99), None,
                 "< 1,000 ms", verdict(p99, lambda t: t < 1000)))

    print(f"| {m}: target | llama.cpp | HyperLlama | ratio | goal | met |")
    print("|---|---:|---:|---:|---|---|")
    for name, base, ours_s, ratio, goal, met in rows:
        ratio_s = "–" if ratio is None else f"{ratio:.3f}x"
        print(f"| {name} | {base} | {ours_s} | {ratio_s} | {goal} | {met} |")

if __name__ == "__main__":
    main()
