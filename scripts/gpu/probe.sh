#!/usr/bin/env bash
# One-call probe on the GPU machine (not part of the benchmark): where does a 64 x (256+128)
# burst spend its time in HyperLlama against llama-batched-bench? Runs after device.sh's
# build and model phases (reusing them on a warm machine). Env: PROBE (which parts, default
# "bb hl"), HL_VARIANTS (space-separated "name:ENV=V,ENV=V" server variants), MODEL (q4km).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
W="${WORK:-/root/hl-gpu}"
FINAL="${OUT:-$W/final}"
export NUM_PARALLEL="${NUM_PARALLEL:-64}"
scripts/gpu/device.sh build model || exit 1
bin="$W/build/bin"
m="${MODEL:-q4km}"
gguf="$W/models/llama8b-shape-$m.gguf"
P="$W/out/probe"
mkdir -p "$P"
say() { echo "[$(date -u +%T)] probe: $*" | tee -a "$P/probe.log" >&2; }
# GPU clocks, power and load once a second meanwhile.
nvidia-smi dmon -s pucm -o T >"$P/dmon.txt" 2>&1 &
dmon=$!
if [[ " ${PROBE:-bb hl} " == *" bb "* ]]; then
    n=0
    while IFS= read -r args; do
        [ -n "$args" ] || continue
        # shellcheck disable=SC2086
        n=$((n + 1))
        LD_LIBRARY_PATH="$bin" "$bin/llama-batched-bench" -m "$gguf" -fa on -ngl 999 $args >"$P/bb-$n.log" 2>&1
        say "bb [$args] $(grep '^| *[0-9]' "$P/bb-$n.log" | tr -s ' ')"
    done <<<"${BB_VARIANTS:-"-npp 256 -ntg 128 -npl 64 -c 50000
-npp 256 -ntg 128 -npl 64 -c 50000 -b 4096 -ub 4096"}"
fi
if [[ " ${PROBE:-bb hl} " == *" hl "* ]]; then
    for v in ${HL_VARIANTS:-default}; do
        name="${v%%:*}"
        envs=()
        [[ "$v" == *:* ]] && IFS=',' read -ra envs <<<"${v#*:}"
        say "hyperllama $name: ${envs[*]:-defaults}"
        mkdir -p "$P/$name"
        env "${envs[@]}" OUT="$P/$name" BENCH_MODELS="$m" SKIP_REFS=1 SKIP_LLAMA_SERVER=1 \
            WORKLOADS="${WORKLOADS:-sweep}" CONCURRENCY="${CONCURRENCY:-64}" \
            HYPERLLAMA_LOG="${HYPERLLAMA_LOG:-info,hyperllama_engine=trace}" scripts/gpu/bench.sh >"$P/$name/stdout.log" 2>&1
        say "hyperllama $name: $(grep -E '^\| *sweep|c=64|64 ' "$P/$name/$m-hyperllama.bench.log" | head -3 | tr -s ' ')"
    done
fi
kill "$dmon" 2>/dev/null
say "done"
tar -czf "$FINAL/probe.tgz" -C "$P" . 2>/dev/null
