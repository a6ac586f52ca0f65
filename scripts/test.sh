#!/usr/bin/env bash
# The whole test suite: formatting, lints, the dependency rule, and every test (unit, property,
# integration and real-model tests). Model tests run one at a time (.config/nextest.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/fetch-models.sh >/dev/null

echo "== format" >&2
cargo fmt --all -- --check

echo "== dependency rule: hyperllama-core depends on no other crate of ours and no runtime" >&2
bad="$(cargo tree -p hyperllama-core -e normal --prefix none | sort -u \
    | grep -E '^(hyperllama-(engine|models|server|cli)|tokio|axum|sqlx) ' || true)"
[ -z "$bad" ] || { echo "hyperllama-core must not depend on: $bad" >&2; exit 1; }

echo "== clippy" >&2
cargo clippy --workspace --all-targets -- -D warnings

echo "== doc tests" >&2
cargo test --workspace --doc --quiet

echo "== build" >&2
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-run
else
    cargo test --workspace --no-run
fi

# llama.cpp's own tools, beside the build: the fidelity goldens recorded on this machine
# (llama.cpp's CPU kernels round differently on different CPUs) by llama-simple linked
# against our build's llama.cpp, and llama-server for the tests of the child-process engine.
# Both steps skip what is already built.
echo "== llama.cpp's goldens and llama-server" >&2
GOLDENS_DIR=build/goldens scripts/record-goldens.sh
export HYPERLLAMA_GOLDENS="$PWD/build/goldens"
if [ -z "${HYPERLLAMA_LLAMA_SERVER:-}" ]; then
    HYPERLLAMA_LLAMA_SERVER="$(scripts/build-llama-server.sh)/llama-server"
    export HYPERLLAMA_LLAMA_SERVER
fi

echo "== tests" >&2
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    # Without nextest, one test at a time keeps model tests from sharing the cores.
    cargo test --workspace --no-fail-fast -- --test-threads=1
fi
