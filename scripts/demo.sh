#!/usr/bin/env bash
# The demo: set up, build, fetch the demo model (SmolLM2-135M-Instruct), and answer a prompt.
#   scripts/demo.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
models="$(scripts/fetch-models.sh)"
cargo build --bin hyperllama
prompt="${1:-Why is the sky blue? Answer in two sentences.}"
echo ">>> $prompt"
exec target/debug/hyperllama run "$models/SmolLM2-135M-Instruct.Q4_1.gguf" --verbose "$prompt"
