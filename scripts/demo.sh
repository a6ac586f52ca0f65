#!/usr/bin/env bash
# The demo: set up, build, fetch the demo model (SmolLM2-135M-Instruct), create it in the model
# store as `smollm2`, start `hyperllama serve`, and answer a prompt through the Ollama API
# (/api/generate, streamed). The server is stopped at the end.
#   scripts/demo.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
models="$(scripts/fetch-models.sh)"
cargo build --bin hyperllama
bin="$PWD/target/debug/hyperllama"
prompt="${1:-Why is the sky blue? Answer in two sentences.}"
host="${HYPERLLAMA_HOST:-127.0.0.1:11434}"

workdir="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$workdir"' EXIT
printf 'FROM %s\nPARAMETER temperature 0.7\n' "$models/SmolLM2-135M-Instruct.Q4_1.gguf" > "$workdir/Modelfile"
"$bin" create smollm2 -f "$workdir/Modelfile" 2>/dev/null

HYPERLLAMA_HOST="$host" "$bin" serve 2> "$workdir/serve.log" &
server=$!
python3 - "$host" "$prompt" <<'PY'
import json, sys, time, urllib.request
host, prompt = sys.argv[1], sys.argv[2]
base = f"http://{host}"
for _ in range(100):
    try:
        urllib.request.urlopen(base + "/", timeout=1).read()
        break
    except OSError:
        time.sleep(0.1)
else:
    sys.exit(f"the server did not come up on {host}")
print(f">>> {prompt}", flush=True)
body = json.dumps({"model": "smollm2", "prompt": prompt}).encode()
req = urllib.request.Request(base + "/api/generate", data=body, headers={"Content-Type": "application/json"})
with urllib.request.urlopen(req) as resp:
    for line in resp:
        chunk = json.loads(line)
        if "error" in chunk:
            sys.exit(f"Error: {chunk['error']}")
        print(chunk.get("response", ""), end="", flush=True)
        if chunk.get("done"):
            rate = chunk["eval_count"] / max(chunk["eval_duration"], 1) * 1e9
            print(f"\n\n[{chunk['eval_count']} tokens, {rate:.1f} tokens/s, done_reason {chunk['done_reason']}]")
PY
