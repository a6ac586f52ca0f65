#!/usr/bin/env bash
# GPU serving benchmark, run on the GPU machine by scripts/gpu/device.sh (which builds llama.cpp
# and makes the models first). Per model in BENCH_MODELS ("q4km f16"):
#   1. llama-bench tg128 and llama-batched-bench (prompt 256, 128 new, 1/8/32/64/128 parallel):
#      the raw engine's numbers, same libraries;
#   2. HyperLlama (`hyperllama serve` on those CUDA libraries: all layers offloaded, flash
#      attention auto, KV sized from free memory), then
#   3. llama-server (same build) with -np LS_NP (64) -kvu -fa on -ngl 999,
#   each under one `hyperllama bench` run: single (3 requests), sweep at 1,8,32,64,128 clients
#   whose prompts are PROMPT_TOKENS (256) tokens as the server counts them, template and question
#   included (llama-batched-bench's -npp 256), shared-prefix (64 users, 1,000-token system prompt), long-prompt (8 decoders,
#   2,000-token prompt).
#   The 64-stream shape is also measured REPEAT64 (3) more times on each side, with other prompts
#   (batched-bench -npl 64,64,64; on the fresh server, before the other workloads, the bench's
#   sweep at 64,64,64 with another seed), and targets.py compares the medians.
# Writes $OUT/<model>-<server>.{json,svg,bench.log,server.log}, $OUT/<model>-ref.txt,
# $OUT/<model>-ref64.txt, $OUT/<model>-hyperllama-c64.json, $OUT/<model>-compare.md and
# $OUT/<model>-targets.md. SMOKE=1: HyperLlama only, one generation and /api/ps.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD
B="$root/gpu-bundle"
W="${WORK:-/root/hl-gpu}"
OUT="${OUT:-$W/out}"
bin="$W/build/bin"
hl="${HL_BIN:-$B/hyperllama}"
num_ctx="${NUM_CTX:-4096}"
np="${NUM_PARALLEL:-128}"
conc="${CONCURRENCY:-1,8,32,64,128}"
threads="${THREADS:-8}"
bench_limit="${BENCH_LIMIT:-180}" # seconds one `hyperllama bench` run may take
repeat64="${REPEAT64:-3}"
reps="$(printf '64,%.0s' $(seq 1 "$repeat64"))"
reps="${reps%,}"
mkdir -p "$OUT" "$W/store"
say() { echo "[$(date -u +%T)] bench: $*" | tee -a "${DEVICE_LOG:-$OUT/device.log}" >&2; }
ls_np="${LS_NP:-64}"
bench_opts=(--workload "${WORKLOADS:-single,sweep,shared-prefix,long-prompt}" --concurrency "$conc"
    --requests 3 --max-tokens 128 --system-tokens 1000 --users 64 --decoders 8 --long-tokens 2000
    --prompt-tokens "${PROMPT_TOKENS:-256}" --timeout 120)

server_pid=""
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null; wait "$server_pid" 2>/dev/null; server_pid=""
    fi
}
trap stop_server EXIT
wait_ready() { # url pid
    for _ in $(seq 1 240); do
        kill -0 "$2" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1")" = 200 ] && return 0
        sleep 0.5
    done
    return 1
}
gpu_mem() { nvidia-smi --query-gpu=memory.used --format=csv,noheader | tr -d '\n'; }

repeat_64() { # model port: the 64-stream shape REPEAT64 times, with prompts of its own
    local m="$1" port="$2"
    [ "$repeat64" -gt 0 ] || return 0
    say "hyperllama $m: the 64-stream shape $repeat64 times"
    timeout "$bench_limit" "$hl" bench --url "http://127.0.0.1:$port" --api openai --model "$m" \
        --workload sweep --concurrency "$reps" --seed 2 --max-tokens 128 \
        --prompt-tokens "${PROMPT_TOKENS:-256}" --timeout 120 --label hyperllama \
        --json "$OUT/$m-hyperllama-c64.json" >"$OUT/$m-hyperllama-c64.bench.log" 2>&1 \
        || say "the repeated 64-stream bench failed"
    grep "c=64" "$OUT/$m-hyperllama-c64.bench.log" >&2
}

run_hyperllama() { # model gguf
    local m="$1" gguf="$2" port=18434
    export LD_LIBRARY_PATH="$B/hl-lib:$bin"
    export HYPERLLAMA_MODELS="$W/store" HYPERLLAMA_DB="$W/index.db" HYPERLLAMA_HOST="127.0.0.1:$port"
    export HYPERLLAMA_NUM_PARALLEL="$np" HYPERLLAMA_CONTEXT_LENGTH="$num_ctx" HYPERLLAMA_KEEP_ALIVE=-1
    export HYPERLLAMA_NUM_THREADS="$threads" HYPERLLAMA_MAX_QUEUE=4096
    export HYPERLLAMA_LOG="${HYPERLLAMA_LOG:-info}" # llama.cpp's own lines too (offload, errors)
    printf 'FROM %s\n' "$gguf" >"$W/Modelfile-$m"
    "$hl" create "$m" -f "$W/Modelfile-$m" >"$OUT/$m-create.log" 2>&1 || { say "create failed"; cat "$OUT/$m-create.log"; return 1; }
    "$hl" serve >"$OUT/$m-hyperllama.server.log" 2>&1 &
    server_pid=$!
    wait_ready "http://127.0.0.1:$port/" "$server_pid" || { say "hyperllama did not come up"; tail -30 "$OUT/$m-hyperllama.server.log"; return 1; }
    local t0=$SECONDS
    curl -s -m 300 "http://127.0.0.1:$port/api/generate" -d "{\"model\":\"$m\",\"prompt\":\"Hello\",\"stream\":false,\"options\":{\"num_predict\":32}}" \
        | head -c 600 >"$OUT/$m-generate.json"
    say "hyperllama $m: first generation after $((SECONDS - t0)) s: $(head -c 300 "$OUT/$m-generate.json")"
    curl -s "http://127.0.0.1:$port/api/ps" >"$OUT/$m-ps.json"
    "$hl" ps >>"$OUT/$m-ps.json" 2>&1
    say "hyperllama $m: /api/ps $(cat "$OUT/$m-ps.json"); GPU memory used $(gpu_mem)"
    grep -iE "offload|CUDA|flash|KV|kv_cells|n_ctx" "$OUT/$m-hyperllama.server.log" | head -20 >&2
    if [ "${SMOKE:-0}" != 1 ]; then
        # The 64-stream shape first, on the fresh server, as batched-bench runs in a fresh
        # process: after the shared-prefix and long-prompt workloads every kernel of a decode
        # step measured about 1 us longer (docs/benchmarks-gpu.md). C64_AFTER=1: last.
        [ "${C64_AFTER:-0}" = 1 ] || repeat_64 "$m" "$port"
        say "hyperllama $m: hyperllama bench"
        timeout "$bench_limit" "$hl" bench --url "http://127.0.0.1:$port" --api openai --model "$m" "${bench_opts[@]}" \
            --label hyperllama --json "$OUT/$m-hyperllama.json" --plot "$OUT/$m-hyperllama.svg" \
            >"$OUT/$m-hyperllama.bench.log" 2>&1 || say "bench against hyperllama failed"
        tail -25 "$OUT/$m-hyperllama.bench.log" >&2
        [ "${C64_AFTER:-0}" != 1 ] || repeat_64 "$m" "$port"
    fi
    stop_server
    unset LD_LIBRARY_PATH
}

run_llama_server() { # model gguf
    local m="$1" gguf="$2" port=18435
    LD_LIBRARY_PATH="$bin" "$bin/llama-server" --model "$gguf" --alias "$m" --host 127.0.0.1 --port "$port" \
        --no-webui --offline -c "$((num_ctx * ls_np))" -np "$ls_np" -kvu -fa on -ngl 999 -t "$threads" \
        >"$OUT/$m-llama-server.server.log" 2>&1 &
    server_pid=$!
    wait_ready "http://127.0.0.1:$port/health" "$server_pid" || { say "llama-server did not come up"; tail -30 "$OUT/$m-llama-server.server.log"; return 1; }
    say "llama-server $m: up; GPU memory used $(gpu_mem); hyperllama bench"
    LD_LIBRARY_PATH="$bin" timeout "$bench_limit" "$hl" bench --url "http://127.0.0.1:$port" --api openai --model "$m" "${bench_opts[@]}" \
        --label llama-server --json "$OUT/$m-llama-server.json" --plot "$OUT/$m-llama-server.svg" \
        >"$OUT/$m-llama-server.bench.log" 2>&1 || say "bench against llama-server failed"
    tail -25 "$OUT/$m-llama-server.bench.log" >&2
    stop_server
}

refs() { # model gguf
    local m="$1" gguf="$2"
    say "$m: llama-bench tg128 and llama-batched-bench"
    {
        LD_LIBRARY_PATH="$bin" "$bin/llama-bench" -m "$gguf" -p 0 -n 128 -r 3 -fa 1 -ngl 999 -o md 2>/dev/null
        LD_LIBRARY_PATH="$bin" "$bin/llama-batched-bench" -m "$gguf" -npp 256 -ntg 128 -npl 1,8,32,64,128 \
            -c 50000 -fa on -ngl 999 2>/dev/null | grep '^|'
    } >"$OUT/$m-ref.txt"
    cat "$OUT/$m-ref.txt" >&2
    if [ "$repeat64" -gt 0 ]; then
        LD_LIBRARY_PATH="$bin" "$bin/llama-batched-bench" -m "$gguf" -npp 256 -ntg 128 -npl "$reps" \
            -c 50000 -fa on -ngl 999 2>/dev/null | grep '^|' >"$OUT/$m-ref64.txt"
        cat "$OUT/$m-ref64.txt" >&2
    fi
}

for m in ${BENCH_MODELS:-q4km f16}; do
    gguf="$W/models/llama8b-shape-$m.gguf"
    [ -f "$gguf" ] || { say "no model $gguf"; exit 1; }
    if [ "${SMOKE:-0}" = 1 ]; then
        run_hyperllama "$m" "$gguf" || exit 1
        continue
    fi
    [ "${SKIP_REFS:-0}" = 1 ] || refs "$m" "$gguf"
    [ "${REFS_ONLY:-0}" = 1 ] && continue
    run_hyperllama "$m" "$gguf"
    [ "${SKIP_LLAMA_SERVER:-0}" = 1 ] || run_llama_server "$m" "$gguf"
    if [ -f "$OUT/$m-hyperllama.json" ] && [ -f "$OUT/$m-llama-server.json" ]; then
        LD_LIBRARY_PATH="$bin" "$hl" bench compare "$OUT/$m-llama-server.json" "$OUT/$m-hyperllama.json" --baseline llama-server \
            --markdown >"$OUT/$m-compare.md" 2>&1
        cat "$OUT/$m-compare.md" >&2
    fi
    python3 scripts/gpu/targets.py "$OUT" "$m" >"$OUT/$m-targets.md" 2>&1
    say "$m: the targets"
    cat "$OUT/$m-targets.md" >&2
done
