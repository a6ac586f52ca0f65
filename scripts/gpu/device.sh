#!/usr/bin/env bash
# Runs on the GPU machine (the `device` tool's H100), from the repository root, with gpu-bundle/
# (scripts/gpu/pack.sh) carried along. One command does everything; each phase is skipped when
# its result is already there (a warm machine keeps $WORK between calls):
#   build   llama.cpp from gpu-bundle/llama-src.tar.xz with CUDA (sm_90), shared libraries, plus
#           llama-server, llama-batched-bench, llama-bench and llama-quantize (16 cores: ~5 min)
#   model   the random-weight Llama-3.1-8B-shaped GGUF: F16 (gguf-py), then Q4_K_M (llama-quantize)
#   smoke   hyperllama against the CUDA libraries: loads Q4_K_M, one generation, /api/ps
#   bench   per model (BENCH_MODELS, default "q4km f16"): llama-bench tg128, llama-batched-bench,
#           then HyperLlama and llama-server in turn under `hyperllama bench` (scripts/gpu/bench.sh)
# Usage: scripts/gpu/device.sh [phase ...]   (default: build model smoke bench)
# Results and logs go to $WORK/out; at the end they are packed into $OUT/results.tgz, with
# device.log beside it (the device tool brings back at most 8 files). Env: WORK (default
# /root/hl-gpu), ARTIFACTS=1 (also bring back the CUDA build as $OUT/cuda-bin.tar.xz.* parts; a
# later call that carries them unpacked as gpu-cuda/bin skips the build).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
B="$root/gpu-bundle"
W="${WORK:-/root/hl-gpu}"
FINAL="${OUT:-$W/final}"
export OUT="$W/out"
export NCCL_NVLS_ENABLE=0
mkdir -p "$W" "$OUT" "$FINAL"
say() { echo "[$(date -u +%T)] device: $*" | tee -a "$OUT/device.log" >&2; }
finish() {
    tar -czf "$FINAL/results.tgz" -C "$OUT" . 2>/dev/null
    cp "$OUT/device.log" "$FINAL/" 2>/dev/null
}
trap finish EXIT
phases=("$@")
[ ${#phases[@]} -gt 0 ] || phases=(build model smoke bench)
jobs="$(nproc)"
export PATH="/usr/local/cuda/bin:$PATH"

phase_build() {
    if [ -x "$W/build/bin/llama-server" ] && [ -x "$W/build/bin/llama-quantize" ]; then
        say "build: already there"; return 0
    fi
    if [ -x "$root/gpu-cuda/bin/llama-server" ]; then
        say "build: using the carried gpu-cuda/bin"
        mkdir -p "$W/build" && cp -a "$root/gpu-cuda/bin" "$W/build/" && return 0
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
        tar -C "$W/build" -cf - bin | xz -T0 -2 | split -b 15M - "$FINAL/cuda-bin.tar.xz."
        say "build: artifacts $(du -ch "$FINAL"/cuda-bin.tar.xz.* | tail -1)"
    fi
}

phase_model() {
    mkdir -p "$W/models"
    local f16="$W/models/llama8b-shape-f16.gguf" q4="$W/models/llama8b-shape-q4km.gguf"
    if [ ! -f "$f16" ]; then
        say "model: writing the F16 GGUF"
        PYTHONPATH="$W/src/llama.cpp/gguf-py" python3 scripts/gpu/make-model.py model \
            "$B/smollm2-vocab.json.gz" "$f16.part" 2>&1 | tail -3 && mv "$f16.part" "$f16" || return 1
    fi
    if [ ! -f "$q4" ]; then
        say "model: quantizing to Q4_K_M"
        "$W/build/bin/llama-quantize" "$f16" "$q4.part" Q4_K_M "$jobs" >"$OUT/quantize.log" 2>&1 \
            && mv "$q4.part" "$q4" || { tail -20 "$OUT/quantize.log"; return 1; }
    fi
    ls -la "$W/models" >&2
}

phase_smoke() {
    say "smoke: hyperllama on the CUDA libraries"
    BENCH_MODELS=q4km SMOKE=1 scripts/gpu/bench.sh
}

phase_bench() {
    say "bench: ${BENCH_MODELS:-q4km f16}"
    scripts/gpu/bench.sh
}

nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv,noheader >"$OUT/gpu.txt" 2>&1
say "$(cat "$OUT/gpu.txt"); glibc $(ldd --version | head -1 | awk '{print $NF}'); phases: ${phases[*]}"
for p in "${phases[@]}"; do
    "phase_$p" || { say "phase $p FAILED"; exit 1; }
done
say "all phases done"
