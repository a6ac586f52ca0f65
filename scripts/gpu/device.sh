#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool's H100), from the repository root, with gpu-bundle/
# (scripts/gpu/pack.sh) carried along. One command does everything; each phase is skipped when
# its result is already there (a warm machine keeps $WORK between calls):
#   build   llama.cpp from gpu-bundle/llama-src.tar.xz with CUDA (sm_90), shared libraries, plus
#           llama-server, llama-batched-bench, llama-bench and llama-quantize (16 cores: ~5 min)
#   model   the random-weight Llama-3.1-8B-shaped GGUF: F16 (gguf-py), then Q4_K_M (llama-quantize)
#   refs    llama-bench tg128 and llama-batched-bench only (no hyperllama binary needed)
#   smoke   hyperllama against the CUDA libraries: loads Q4_K_M, one generation, /api/ps
#   bench   per model (BENCH_MODELS, default "q4km f16"): llama-bench tg128, llama-batched-bench,
#           then HyperLlama and llama-server in turn under `hyperllama bench` (scripts/gpu/bench.sh)
# Usage: scripts/gpu/device.sh [phase ...]   (default: build model smoke bench)
# Results and logs go to $WORK/out; at the end they are packed into $OUT/results.tgz, with
# device.log beside it (the device tool brings back at most 8 files). Env: WORK (default
# /root/hl-gpu), ARTIFACTS=1 (also bring back the CUDA build as $OUT/cuda-bin.tar.xz.* parts; a
# later call that carries them as gpu-cuda/cuda-bin.tar.xz.* skips the build).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
B="$root/gpu-bundle"
W="${WORK:-/root/hl-gpu}"
FINAL="${OUT:-$W/final}"
export OUT="$W/out"
export NCCL_NVLS_ENABLE=0
mkdir -p "$W" "$OUT" "$FINAL"
export DEVICE_LOG="$FINAL/device.log"
say() { echo "[$(date -u +%T)] device: $*" | tee -a "$DEVICE_LOG" >&2; }
finish() {
    tar -czf "$FINAL/results.tgz" -C "$OUT" . 2>/dev/null
}
trap finish EXIT
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(build model smoke bench)
jobs="$(nproc)"
export PATH="/usr/local/cuda/bin:$PATH"

f16="$W/models/llama8b-shape-f16.gguf"
q4="$W/models/llama8b-shape-q4km.gguf"
gen_pid=""
# The F16 GGUF is written by Python (gguf-py from the bundle's tree), overlapping the build.
start_f16() {
    [ -f "$f16" ] || [ -n "$gen_pid" ] && return 0
    mkdir -p "$W/models" "$W/gguf-src"
    if [ -f "$B/gguf-py.tar.xz" ]; then
        tar -xJf "$B/gguf-py.tar.xz" -C "$W/gguf-src" || return 1
    else
        tar -xJf "$B/llama-src.tar.xz" -C "$W/gguf-src" llama.cpp/gguf-py || return 1
    fi
    ( PYTHONPATH="$W/gguf-src/llama.cpp/gguf-py" python3 scripts/gpu/make-model.py model \
        "$B/smollm2-vocab.json.gz" "$f16.part" >"$OUT/make-model.log" 2>&1 && mv "$f16.part" "$f16" ) &
    gen_pid=$!
    say "model: writing the F16 GGUF in the background"
}

phase_build() {
    start_f16
    if [ -x "$W/build/bin/llama-server" ] && [ -x "$W/build/bin/llama-quantize" ]; then
        say "build: already there"; return 0
    fi
    if ls "$root"/gpu-cuda/cuda-bin.tar.xz.* >/dev/null 2>&1; then
        say "build: unpacking the carried gpu-cuda/cuda-bin.tar.xz.* (an earlier call's ARTIFACTS=1)"
        mkdir -p "$W/build" && cat "$root"/gpu-cuda/cuda-bin.tar.xz.* | xz -d | tar -xf - -C "$W/build" \
            && [ -x "$W/build/bin/llama-server" ] && return 0
        say "build: the carried build is unusable; building"
    fi
    say "build: unpacking and configuring (CUDA sm_90, shared, -j$jobs)"
    rm -rf "$W/src" && mkdir -p "$W/src" && tar -xJf "$B/llama-src.tar.xz" -C "$W/src" || return 1
    local t0=$SECONDS
    cmake -S "$W/src/llama.cpp" -B "$W/build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
        -DGGML_CUDA=ON -DCMAKE_CUDA_ARCHITECTURES=90 -DBUILD_SHARED_LIBS=ON -DGGML_NATIVE=ON \
        -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_COMMON=ON -DLLAMA_BUILD_TOOLS=ON \
        -DLLAMA_BUILD_SERVER=ON -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF \
        -DLLAMA_BUILD_APP=OFF -DLLAMA_BUILD_UI=OFF -DLLAMA_USE_PREBUILT_UI=OFF \
        -DLLAMA_BUILD_COMMIT=sys-0.1.161+sdist-0.3.36 >"$OUT/cmake.log" 2>&1 || { tail -30 "$OUT/cmake.log"; return 1; }
    cmake --build "$W/build" -j "$jobs" --target llama-server llama-batched-bench llama-bench \
        llama-quantize >"$OUT/build.log" 2>&1 || { grep -m5 -B2 -A8 'error' "$OUT/build.log"; tail -20 "$OUT/build.log"; return 1; }
    say "build: done in $((SECONDS - t0)) s"
    ls "$W/build/bin" | tr '\n' ' ' >&2; echo >&2
    if [ "${ARTIFACTS:-0}" = 1 ]; then
        strip --strip-unneeded "$W"/build/bin/* 2>/dev/null
        tar -C "$W/build" -cf - bin | xz -T0 -2 | split -b 15M - "$FINAL/cuda-bin.tar.xz."
        say "build: artifacts $(du -ch "$FINAL"/cuda-bin.tar.xz.* | tail -1)"
    fi
}

phase_model() {
    start_f16
    if [ -n "$gen_pid" ]; then
        wait "$gen_pid"; gen_pid=""
        cat "$OUT/make-model.log" >&2
    fi
    [ -f "$f16" ] || { say "model: no F16 GGUF"; return 1; }
    if [ ! -f "$q4" ] && [ "${NO_Q4:-0}" != 1 ]; then
        say "model: quantizing to Q4_K_M"
        "$W/build/bin/llama-quantize" "$f16" "$q4.part" Q4_K_M "$jobs" >"$OUT/quantize.log" 2>&1 \
            && mv "$q4.part" "$q4" || { tail -20 "$OUT/quantize.log"; return 1; }
    fi
    say "model: $(ls -la "$W/models" | tail -n +2 | awk '{print $5, $9}' | tr '\n' ' ')"
}

phase_refs() {
    say "refs: llama-bench and llama-batched-bench for ${BENCH_MODELS:-q4km f16}"
    REFS_ONLY=1 scripts/gpu/bench.sh
}

phase_smoke() {
    say "smoke: hyperllama on the CUDA libraries"
    BENCH_MODELS=q4km SMOKE=1 scripts/gpu/bench.sh
}

phase_bench() {
    say "bench: ${BENCH_MODELS:-q4km f16}"
    scripts/gpu/bench.sh
}

# pack.sh's binary may travel xz-compressed (to stay under the 64 MiB a call carries).
if [ -f "$B/hyperllama.xz" ] && [ ! -x "$B/hyperllama" ]; then
    xz -dc "$B/hyperllama.xz" >"$B/hyperllama" && chmod +x "$B/hyperllama"
fi
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
say "$(cat "$OUT/gpu.txt"); glibc $(ldd --version | head -1 | awk '{print $NF}'); phases: ${phases[*]}"
for p in "${phases[@]}"; do
    case "$p" in
        build | model) "phase_$p" || { say "phase $p FAILED"; exit 1; } ;;
        # A failed smoke test still lets the benchmark measure llama-server.
        *) "phase_$p" || say "phase $p FAILED" ;;
    esac
done
say "all phases done"
