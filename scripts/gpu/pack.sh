#!/usr/bin/env bash
# Packs what the GPU machine needs into gpu-bundle/ (git-ignored; the device tool carries it):
#   hyperllama            the binary, built here with `--features dynamic-link` (llama.cpp as
#                         shared libraries, looked up through LD_LIBRARY_PATH at run time)
#   hl-lib/               the shared libraries built with it that must come from the sys crate's
#                         own tree (libllama-common: the CUDA build there uses the sdist's common/)
#   llama-src.tar.xz      the llama.cpp tree that the sys crate (llama-cpp-sys-2) vendors, with
#                         common/ and tools/ overlaid from the llama-cpp-python 0.3.36 sdist (the
#                         sys crate strips tools/; main's scripts/build-llama-server.sh route
#                         `overlay-common`), plus the sdist's gguf-py. ggml/ and src/ (the kernels)
#                         are the sys crate's, so HyperLlama and llama-server run the same kernels.
#   smollm2-vocab.json.gz SmolLM2's tokenizer keys, for the random-weight 8B GGUF made there.
# Env: CARGO_TARGET_DIR (default /work/gpu-target), LLAMA_CPP_PYTHON_SRC (an unpacked
# llama_cpp_python-0.3.36), SMOLLM2 (the SmolLM2 GGUF), PYTHON (one with numpy).
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
target="${CARGO_TARGET_DIR:-/work/gpu-target}"
lcp="${LLAMA_CPP_PYTHON_SRC:-/work/lcp/llama_cpp_python-0.3.36}/vendor/llama.cpp"
smollm2="${SMOLLM2:-$HOME/.cache/hyperllama/test-models/SmolLM2-135M-Instruct.Q4_1.gguf}"
py="${PYTHON:-python3}"
out="$root/gpu-bundle"
say() { echo "pack: $*" >&2; }

if [ "${SKIP_BUILD:-0}" != 1 ]; then
    say "building hyperllama (release, dynamic-link, x86-64-v3) into $target"
    # x86-64-v3 (AVX2), not native: the binary runs on another machine's CPU.
    RUSTFLAGS="-C target-cpu=x86-64-v3" CARGO_TARGET_DIR="$target" \
        cargo build --release -p hyperllama-cli --features dynamic-link >&2
fi
bin="$target/release/hyperllama"
rm -rf "$out"
mkdir -p "$out/hl-lib"
if [ "${NO_BIN:-0}" = 1 ]; then
    say "NO_BIN=1: llama.cpp sources and vocabulary only (enough for the device's build and refs phases)"
else
[ -x "$bin" ] || { say "no binary at $bin"; exit 1; }
cp "$bin" "$out/hyperllama"
strip "$out/hyperllama"
# The libraries the binary needs that are not built the same way there: llama-common.
for l in $(ldd "$bin" | awk '/llama-common|libcommon/ {print $1}'); do
    f="$(find "$target/release/build" -path '*llama-cpp-sys-2-*' -name "$l" | head -1)"
    [ -n "$f" ] && cp -L "$f" "$out/hl-lib/" && strip "$out/hl-lib/$l"
done
ldd "$bin" | awk '/=>/ {print $1}' >"$out/NEEDED"
fi

sys_src="$(ls -d "$HOME"/.cargo/registry/src/*/llama-cpp-sys-2-0.1.161/llama.cpp | head -1)"
stage="$(mktemp -d)"
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/llama.cpp"
# ggml: only the CPU and CUDA backends travel.
(cd "$sys_src" && tar --exclude='ggml/src/ggml-vulkan' --exclude='ggml/src/ggml-sycl' \
    --exclude='ggml/src/ggml-cann' --exclude='ggml/src/ggml-metal' --exclude='ggml/src/ggml-opencl' \
    --exclude='ggml/src/ggml-webgpu' --exclude='ggml/src/ggml-musa' --exclude='ggml/src/ggml-hip' \
    --exclude='ggml/src/ggml-zdnn' --exclude='ggml/src/ggml-openvino' --exclude='./tools' --exclude='./common' \
    -cf - .) | tar -xf - -C "$stage/llama.cpp"
chmod -R u+w "$stage/llama.cpp"
cp -a "$lcp/common" "$lcp/tools" "$lcp/gguf-py" "$stage/llama.cpp/"
rm -rf "$stage/llama.cpp/tools/ui/public" "$stage/llama.cpp/tools/server/public"
mkdir -p "$stage/llama.cpp/scripts"
cp "$lcp/scripts/ui-assets.cmake" "$stage/llama.cpp/scripts/" 2>/dev/null || true
sys_git="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["git"]["sha1"])' \
    "$(dirname "$sys_src")/.cargo_vcs_info.json" 2>/dev/null || echo unknown)"
cat >"$stage/llama.cpp/PROVENANCE" <<P
ggml/ src/ include/: llama-cpp-sys-2 0.1.161 (llama-cpp-rs git $sys_git)
common/ tools/ gguf-py/: llama-cpp-python 0.3.36 sdist (llama.cpp 0c1e57098)
P
tar -C "$stage" -cf - llama.cpp | xz -T2 -6 >"$out/llama-src.tar.xz"
tar -C "$stage" -cf - llama.cpp/gguf-py | xz -T2 -6 >"$out/gguf-py.tar.xz"
# NO_SRC=1: the device has (or is carried) a CUDA build already, so the sources stay here.
[ "${NO_SRC:-0}" = 1 ] && rm "$out/llama-src.tar.xz"
PYTHONPATH="$lcp/gguf-py" "$py" scripts/gpu/make-model.py vocab "$smollm2" "$out/smollm2-vocab.json.gz"
# XZ_BIN=1: the binary travels compressed (device.sh unpacks it).
if [ "${XZ_BIN:-0}" = 1 ] && [ -f "$out/hyperllama" ]; then
    xz -T2 -6 "$out/hyperllama"
fi
du -sh "$out"/* >&2
du -sh "$out" >&2
