#!/usr/bin/env bash
# One-call probe on the GPU machine (not part of the benchmark): where does a 64 x (256+128)
# burst spend its time in HyperLlama against llama-batched-bench? Runs after device.sh's
# build and model phases (reusing them on a warm machine). Env: PROBE (which parts, default
# "bb hl"), HL_VARIANTS (space-separated "name:ENV=V,ENV=V" server variants), MODEL (q4km).
# Tracing: a BB_VARIANTS line starting with "trace:" or an HL variant with TRACE=1 runs under
# cupti-trace.c (every kernel, copy and runtime call), summarized per decode step by
# cupti-steps.py into trace-<name>.txt. CPU profile: "prof:" or PROF=1 preloads cpu-prof.c
# (a flat profile per thread by cpu-prof.py, in prof-<name>.txt).
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
tracer="$P/libcuptitrace.so"
if [[ "${BB_VARIANTS:-}${HL_VARIANTS:-}" == *trace* || "${HL_VARIANTS:-}" == *TRACE=1* ]]; then
    inc=$(find /usr/local/cuda/ -name cupti.h 2>/dev/null | head -1)
    lib=$(find /usr/local/cuda/ -name 'libcupti.so*' 2>/dev/null | head -1)
    if [ -n "$inc" ] && [ -n "$lib" ] && gcc -O2 -shared -fPIC -I/usr/local/cuda/include -I"$(dirname "$inc")" \
        scripts/gpu/cupti-trace.c -o "$tracer" -L"$(dirname "$lib")" -l:"$(basename "$lib")" \
        -Wl,-rpath,"$(dirname "$lib")" >"$P/tracer-build.log" 2>&1; then
        say "tracer built against $lib"
    else
        say "tracer not built ($inc, $lib): $(tail -5 "$P/tracer-build.log" 2>/dev/null)"
    fi
fi
profiler="$P/libcpuprof.so"
if [[ "${BB_VARIANTS:-}" == *prof:* || "${HL_VARIANTS:-}" == *PROF=1* ]]; then
    gcc -O2 -shared -fPIC -pthread scripts/gpu/cpu-prof.c -o "$profiler" >"$P/profiler-build.log" 2>&1 \
        && say "profiler built" || say "profiler not built: $(tail -5 "$P/profiler-build.log")"
fi
summarize_prof() { # profile prefix: the two largest profiles (the server or the bench program)
    for f in $(ls -S "$1".*.bin 2>/dev/null | head -2); do
        python3 scripts/gpu/cpu-prof.py "$f" >"${f%.bin}.txt" 2>&1
        say "profile $f:"
        head -60 "${f%.bin}.txt" >&2
    done
}
summarize() { # trace prefix
    for f in "$1".*.bin; do
        [ -s "$f" ] || continue
        python3 scripts/gpu/cupti-steps.py "$f" >"${f%.bin}.txt" 2>&1
        grep -q "steps;" "${f%.bin}.txt" && { say "trace $f:"; cat "${f%.bin}.txt" >&2; }
    done
}
# GPU clocks, power and load once a second meanwhile.
nvidia-smi dmon -s pucm -o T >"$P/dmon.txt" 2>&1 &
dmon=$!
if [[ " ${PROBE:-bb hl} " == *" bb "* ]]; then
    n=0
    while IFS= read -r args; do
        [ -n "$args" ] || continue
        n=$((n + 1))
        trace=()
        if [[ "$args" == trace:* ]]; then
            args="${args#trace:}"
            trace=(CUDA_INJECTION64_PATH="$tracer" CUPTI_TRACE_OUT="$P/trace-bb-$n")
        elif [[ "$args" == prof:* ]]; then
            args="${args#prof:}"
            trace=(LD_PRELOAD="$profiler" CPUPROF_OUT="$P/prof-bb-$n")
        fi
        # shellcheck disable=SC2086
        env "${trace[@]}" LD_LIBRARY_PATH="$bin" "$bin/llama-batched-bench" -m "$gguf" -fa on -ngl 999 $args >"$P/bb-$n.log" 2>&1
        say "bb [$args] $(grep '^| *[0-9]' "$P/bb-$n.log" | tr -s ' ')"
        [ ${#trace[@]} -eq 0 ] || { summarize "$P/trace-bb-$n"; summarize_prof "$P/prof-bb-$n"; }
    done <<<"${BB_VARIANTS:-"-npp 256 -ntg 128 -npl 64 -c 50000
-npp 256 -ntg 128 -npl 64 -c 50000 -b 4096 -ub 4096"}"
fi
if [[ " ${PROBE:-bb hl} " == *" hl "* ]]; then
    for v in ${HL_VARIANTS:-default}; do
        name="${v%%:*}"
        envs=()
        [[ "$v" == *:* ]] && IFS=',' read -ra envs <<<"${v#*:}"
        traced=0
        for i in "${!envs[@]}"; do
            if [ "${envs[$i]}" = TRACE=1 ]; then
                envs[i]="CUDA_INJECTION64_PATH=$tracer"
                envs+=("CUPTI_TRACE_OUT=$P/trace-$name")
                traced=1
            elif [ "${envs[$i]}" = PROF=1 ]; then
                envs[i]="LD_PRELOAD=$profiler"
                envs+=("CPUPROF_OUT=$P/prof-$name")
                traced=1
            fi
        done
        say "hyperllama $name: ${envs[*]:-defaults}"
        mkdir -p "$P/$name"
        # The variant's settings come last: they override the defaults here (the log level
        # among them).
        env HYPERLLAMA_LOG="${HYPERLLAMA_LOG:-info,hyperllama_engine=trace}" OUT="$P/$name" BENCH_MODELS="$m" \
            SKIP_REFS=1 SKIP_LLAMA_SERVER=1 WORKLOADS="${WORKLOADS:-sweep}" CONCURRENCY="${CONCURRENCY:-64}" \
            "${envs[@]}" scripts/gpu/bench.sh >"$P/$name/stdout.log" 2>&1
        say "hyperllama $name: $(grep -E '^\| *sweep|c=64|64 ' "$P/$name/$m-hyperllama.bench.log" | head -3 | tr -s ' ')"
        [ "$traced" = 0 ] || { summarize "$P/trace-$name"; summarize_prof "$P/prof-$name"; }
    done
fi
kill "$dmon" 2>/dev/null
say "done"
tar -czf "$FINAL/probe.tgz" --exclude='*.bin' --exclude='*.so' -C "$P" . 2>/dev/null
# The raw traces, where they fit what comes back (16 MiB a file).
if compgen -G "$P/trace-*.bin" >/dev/null || compgen -G "$P/prof-*.bin" >/dev/null; then
    (cd "$P" && tar -cJf "$FINAL/traces.txz" --ignore-failed-read trace-*.bin trace-*.names trace-*.api prof-*.bin prof-*.syms \
        prof-*.threads 2>/dev/null)
    [ "$(stat -c %s "$FINAL/traces.txz")" -lt 16000000 ] || rm -f "$FINAL/traces.txz"
fi
