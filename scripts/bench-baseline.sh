#!/usr/bin/env bash
# Runs the same `hyperllama bench` workloads against HyperLlama and against llama.cpp's own
# llama-server (built from the kernels we link by scripts/build-llama-server.sh), for both test
# models, and writes the results:
#
#   results/bench-<UTC date-time>/<model>-<label>.{json,svg,log}   one per server and model
#   results/bench-<UTC date-time>/<model>-compare.md                `hyperllama bench compare`
#   results/bench-<UTC date-time>/report.md                         the generated section
#   docs/benchmarks.md                                              same section, spliced in
#
# Servers, one at a time (never two at once: llama.cpp's spinning threads collapse when they
# share cores), each started on a free 127.0.0.1 port and stopped after its workloads:
#   hyperllama         `hyperllama serve`, NUM_PARALLEL sequences, NUM_CTX tokens each (one
#                      KV stream of NUM_CTX cells per sequence, the default on a CPU)
#   hyperllama-nospec  the same with speculative decoding off (HYPERLLAMA_SPECULATIVE=off): no
#                      workload may be more than 3% slower with it on
#   llama-server-np1   llama-server as Ollama starts it: one slot, -c NUM_CTX
#   llama-server-np16  llama-server tuned: NUM_PARALLEL slots, unified KV, -c NUM_CTX x NUM_PARALLEL
#
# Run on an idle machine. Settings (environment):
#   QUICK=1              tiny sizes for a smoke run (results only; docs/benchmarks.md untouched)
#   HYPERLLAMA_BIN       the hyperllama binary (default target/debug/hyperllama; build it first,
#                        preferably `cargo build --release` and point this at target/release)
#   BENCH_MODELS         "smollm2 gemma3" (either or both)
#   THREADS              llama.cpp threads for every server (2)
#   NUM_CTX              context per sequence / slot (4096: Ollama's default below 23 GiB VRAM)
#   NUM_PARALLEL         sequences of hyperllama and slots of the tuned llama-server (16)
#   WORKLOADS_HYPERLLAMA, WORKLOADS_NOSPEC, WORKLOADS_NP1, WORKLOADS_NP16
#                        comma lists of bench workloads
#   CONCURRENCY          the sweep's concurrency levels (1,4,16)
#   REQUESTS MAX_TOKENS SEED SYSTEM_TOKENS USERS HISTORY_TOKENS DECODERS LONG_TOKENS TIMEOUT
#                        passed to `hyperllama bench` as --requests, --max-tokens, ...
#   NP1_EXTRA, NP16_EXTRA  extra llama-server flags; HEALTH_TIMEOUT seconds to wait for a server
#   BENCH_OUT            output directory (default results/bench-<UTC date-time>)
#   BENCH_DOCS=0         do not touch docs/benchmarks.md
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

die() { echo "Error: $*" >&2; exit 1; }
say() { echo "bench-baseline: $*" >&2; }

hl="${HYPERLLAMA_BIN:-$root/target/debug/hyperllama}"
[ -x "$hl" ] || die "no hyperllama binary at $hl (cargo build --bin hyperllama, or set HYPERLLAMA_BIN)"
command -v curl >/dev/null || die "curl is needed"
command -v python3 >/dev/null || die "python3 is needed"

quick="${QUICK:-0}"
if [ "$quick" = 1 ]; then
    : "${NUM_CTX:=1024}" "${NUM_PARALLEL:=4}" "${CONCURRENCY:=1,2}" "${REQUESTS:=2}"
    : "${MAX_TOKENS:=8}" "${SYSTEM_TOKENS:=64}" "${USERS:=2}" "${HISTORY_TOKENS:=128}"
    : "${DECODERS:=2}" "${LONG_TOKENS:=256}" "${TIMEOUT:=120}" "${BENCH_DOCS:=0}"
fi
threads="${THREADS:-2}"
num_ctx="${NUM_CTX:-4096}"
np="${NUM_PARALLEL:-16}"
models_wanted="${BENCH_MODELS:-smollm2 gemma3}"
wl_hl="${WORKLOADS_HYPERLLAMA:-single,shared-prefix,multi-turn,long-prompt,sweep,grounded,burst,disconnect}"
wl_nospec="${WORKLOADS_NOSPEC:-single,shared-prefix,multi-turn,long-prompt,sweep,grounded}"
wl_np1="${WORKLOADS_NP1:-single,shared-prefix,grounded}"
wl_np16="${WORKLOADS_NP16:-single,shared-prefix,multi-turn,long-prompt,sweep}"
health_timeout="${HEALTH_TIMEOUT:-180}"
docs="${BENCH_DOCS:-1}"

# The `hyperllama bench` options every server gets (a flag is passed only when its variable is
# set, except the sweep's concurrency, the answer length and the seed, which are pinned here).
bench_opts=(--concurrency "${CONCURRENCY:-1,4,16}" --max-tokens "${MAX_TOKENS:-128}" --seed "${SEED:-42}")
add_opt() { [ -z "${2:-}" ] || bench_opts+=("$1" "$2"); }
add_opt --requests "${REQUESTS:-}"
add_opt --system-tokens "${SYSTEM_TOKENS:-}"
add_opt --users "${USERS:-}"
add_opt --history-tokens "${HISTORY_TOKENS:-}"
add_opt --decoders "${DECODERS:-}"
add_opt --long-tokens "${LONG_TOKENS:-}"
add_opt --timeout "${TIMEOUT:-}"
add_opt --burst "${BURST:-}"

llama_bin="$(scripts/build-llama-server.sh)"
llama_server="$llama_bin/llama-server"
provenance="$root/build/llama.cpp/PROVENANCE"
models_dir="$(scripts/fetch-models.sh)"

out="${BENCH_OUT:-$root/results/bench-$(date -u +%Y-%m-%d-%H%M)}"
mkdir -p "$out"
work="$(mktemp -d)"
runs="$out/runs.tsv" # model, label, server command, bench command, json, svg, load average
: >"$runs"

server_pid=""
failed=()
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
    fi
}
trap 'stop_server; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

free_port() {
    python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# wait_ready URL: polls until URL answers 200, the server exits, or HEALTH_TIMEOUT passes.
wait_ready() {
    local deadline=$((SECONDS + health_timeout))
    while [ $SECONDS -lt $deadline ]; do
        kill -0 "$server_pid" 2>/dev/null || return 1
        [ "$(curl -s -o /dev/null -w '%{http_code}' "$1" || true)" = 200 ] && return 0
        sleep 0.5
    done
    return 1
}

# warm_up BASE MODEL: one 1-token chat request, so that model loading (HyperLlama loads on the
# first request) and first-touch page faults are not measured.
warm_up() {
    curl -sf -m "$health_timeout" "$1/v1/chat/completions" -H 'Content-Type: application/json' \
        -d "{\"model\":\"$2\",\"messages\":[{\"role\":\"user\",\"content\":\"Hi\"}],\"max_tokens\":1}" \
        >/dev/null
}

# run_bench MODEL LABEL WORKLOADS BASE SERVER-COMMAND...: runs the workloads against the
# server that is up at BASE and records the run.
run_bench() {
    local model="$1" label="$2" workloads="$3" base="$4"
    shift 4
    local json="$out/$model-$label.json" svg="$out/$model-$label.svg"
    local cmd=("$hl" bench --url "$base" --api openai --model "$model" --workload "$workloads"
        "${bench_opts[@]}" --label "$label" --json "$json" --plot "$svg")
    local load
    load="$(cut -d' ' -f1-3 /proc/loadavg)"
    say "$model / $label: ${workloads} (load average $load)"
    warm_up "$base" "$model" || die "$label did not answer a warm-up request for $model"
    if ! "${cmd[@]}" >"$out/$model-$label.bench.log" 2>&1; then
        say "hyperllama bench failed for $model / $label (see $out/$model-$label.bench.log)"
        failed+=("$model/$label")
        return 0
    fi
    local shown="${cmd[*]/#$root\//}"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$model" "$label" "$*" \
        "${shown//$base/http://127.0.0.1:<free>}" "$json" "$svg" "$load" >>"$runs"
}

# start LOG COMMAND...: starts a server in the background, output to LOG.
start() {
    local log="$1"
    shift
    "$@" >"$log" 2>&1 &
    server_pid=$!
}

for model in $models_wanted; do
    case "$model" in
        smollm2) gguf="$models_dir/SmolLM2-135M-Instruct.Q4_1.gguf" ;;
        gemma3) gguf="$models_dir/gemma-3-270m-q4_k_m.gguf" ;;
        *) die "unknown model $model (smollm2 or gemma3)" ;;
    esac

    # (a) HyperLlama, on a throw-away store that holds only this model; with speculative
    # decoding (the default) and without.
    for label in hyperllama hyperllama-nospec; do
        if [ "$label" = hyperllama ]; then
            workloads="$wl_hl" spec=on
        else
            workloads="$wl_nospec" spec=off
        fi
        [ -n "$workloads" ] || continue
        store="$work/$model-$label-store"
        mkdir -p "$store"
        printf 'FROM %s\n' "$gguf" >"$work/Modelfile"
        export HYPERLLAMA_MODELS="$store" HYPERLLAMA_DB="$work/$model-$label-index.db"
        "$hl" create "$model" -f "$work/Modelfile" >"$out/$model-create.log" 2>&1 ||
            die "hyperllama create failed (see $out/$model-create.log)"
        port="$(free_port)"
        env_line="HYPERLLAMA_HOST=127.0.0.1:$port HYPERLLAMA_NUM_THREADS=$threads"
        env_line+=" HYPERLLAMA_CONTEXT_LENGTH=$num_ctx HYPERLLAMA_NUM_PARALLEL=$np"
        env_line+=" HYPERLLAMA_KEEP_ALIVE=-1 HYPERLLAMA_MAX_QUEUE=${MAX_QUEUE:-64}"
        env_line+=" HYPERLLAMA_SPECULATIVE=$spec"
        # shellcheck disable=SC2086 # env_line is a list of NAME=VALUE words
        start "$out/$model-$label.server.log" env $env_line "$hl" serve
        wait_ready "http://127.0.0.1:$port/" || die "hyperllama serve did not come up (see $out/$model-$label.server.log)"
        run_bench "$model" "$label" "$workloads" "http://127.0.0.1:$port" \
            "${env_line/127.0.0.1:$port/127.0.0.1:<free>} HYPERLLAMA_MODELS=<store with \`create $model\` FROM $(basename "$gguf")> hyperllama serve"
        stop_server
        unset HYPERLLAMA_MODELS HYPERLLAMA_DB
    done

    # (b) llama-server as Ollama runs it, (c) llama-server tuned for concurrency. Ollama passes
    # --no-webui --offline -c <num_ctx x num_parallel> -np <num_parallel> --flash-attn auto
    # -b/-ub <num_batch> (512 by default) and -t only when set.
    for variant in np1 np16; do
        if [ "$variant" = np1 ]; then
            workloads="$wl_np1"
            flags=(-c "$num_ctx" -np 1 -b 512 -ub 512)
            read -r -a extra <<<"${NP1_EXTRA:-}"
        else
            workloads="$wl_np16"
            flags=(-c "$((num_ctx * np))" -np "$np" -kvu)
            read -r -a extra <<<"${NP16_EXTRA:-}"
        fi
        [ -n "$workloads" ] || continue
        port="$(free_port)"
        args=(--model "$gguf" --alias "$model" --host 127.0.0.1 --port "$port" --no-webui --offline
            "${flags[@]}" --flash-attn auto -t "$threads" "${extra[@]}")
        start "$out/$model-llama-server-$variant.server.log" "$llama_server" "${args[@]}"
        wait_ready "http://127.0.0.1:$port/health" ||
            die "llama-server did not come up (see $out/$model-llama-server-$variant.server.log)"
        shown="${args[*]/#$models_dir\//\$MODELS/}"
        run_bench "$model" "llama-server-$variant" "$workloads" "http://127.0.0.1:$port" \
            "llama-server ${shown/--port $port/--port <free>}"
        stop_server
    done

    # The comparison table of this model, llama-server as Ollama runs it as the baseline.
    jsons=()
    for label in hyperllama hyperllama-nospec llama-server-np1 llama-server-np16; do
        [ -f "$out/$model-$label.json" ] && jsons+=("$out/$model-$label.json")
    done
    if [ "${#jsons[@]}" -ge 2 ]; then
        "$hl" bench compare "${jsons[@]}" --baseline llama-server-np1 --markdown \
            >"$out/$model-compare.md" 2>"$out/$model-compare.log" ||
            say "bench compare failed for $model (see $out/$model-compare.log)"
    fi
done

# ---------------------------------------------------------------------------------------------
# The generated section: machine, models, commands, provenance, tables, targets.
USERS="${USERS:-16}" python3 - "$out" "$runs" "$provenance" "$models_dir" "$quick" "$num_ctx" "$np" "$threads" \
    >"$out/report.md" <<'PY'
import hashlib, json, os, re, subprocess, sys, time

out, runs_file, provenance, models_dir, quick, num_ctx, np_, threads = sys.argv[1:9]

# ---- Reading `hyperllama bench --json` ---------------------------------------------------------
# The JSON layout belongs to `hyperllama bench`; everything that knows it is in this one
# function. It returns {workload key: {metric: float or None}}, where a workload key is a
# workload name ("single", "shared-prefix", "multi-turn", "long-prompt") or "sweep@<concurrency>"
# and the metrics are: throughput (output tokens/s, all requests together), ttft_p50, itl_p50,
# itl_p99 (ms), turn1_ttft, turn2_ttft (median ms, multi-turn), decoder_itl_p50, decoder_itl_p99
# (ms, long-prompt: the streams that decode while the long prompt is prefilled).
# It accepts several spellings; adapt the candidate names when the other side's names settle.
def metrics(doc):
    """Reads one `hyperllama bench --json` file (format hyperllama-bench/1): a list of
    results, one per workload (one per level for the sweep), with ttft_ms/itl_ms
    percentiles and workload-specific extras."""
    found = {}
    for r in doc.get("results", []):
        name = r.get("workload")
        extras = r.get("extras") or {}
        m = {
            "throughput": r.get("output_tok_s"),
            "ttft_p50": (r.get("ttft_ms") or {}).get("p50"),
            "itl_p50": (r.get("itl_ms") or {}).get("p50"),
            "itl_p99": (r.get("itl_ms") or {}).get("p99"),
            "errors": r.get("errors"),
            "drafted": extras.get("drafted"),
        }
        if name == "sweep":
            found[f"sweep@{r.get('concurrency')}"] = m
            continue
        if name == "multi-turn":
            m["turn1_ttft"] = extras.get("ttft_turn1_ms")
            m["turn2_ttft"] = extras.get("ttft_turn2_ms")
        if name == "long-prompt":
            # The decoders' inter-token latency while the long prompt was processed.
            m["decoder_itl_p50"] = extras.get("stall_itl_p50_ms")
            m["decoder_itl_p99"] = extras.get("stall_itl_p99_ms")
            m["long_ttft"] = extras.get("long_ttft_ms")
        if name in ("single", "grounded", "shared-prefix"):
            # A stream's decoding speed: tokens after the first per second.
            m["decode"] = extras.get("decode_tok_s")
            m["copied"] = extras.get("copied_fraction")
        if name == "burst":
            m["served"] = extras.get("served")
            m["refused"] = extras.get("refused_503")
            m["alive_after"] = extras.get("alive_after")
        if name == "disconnect":
            m["kv_before"] = extras.get("kv_cells_before_drop")
            m["kv_freed_ms"] = extras.get("kv_freed_after_ms")
        found[name] = m
    return found
# -----------------------------------------------------------------------------------------------


def sh(cmd):
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def cpu_model():
    for line in open("/proc/cpuinfo"):
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def mem_total():
    for line in open("/proc/meminfo"):
        if line.startswith("MemTotal"):
            return f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
    return "unknown"


runs = [line.rstrip("\n").split("\t") for line in open(runs_file) if line.strip()]
models = []
for r in runs:
    if r[0] not in models:
        models.append(r[0])
files = {"smollm2": "SmolLM2-135M-Instruct.Q4_1.gguf", "gemma3": "gemma-3-270m-q4_k_m.gguf"}


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


p = print
shown_out = os.path.relpath(out) if not os.path.relpath(out).startswith("..") else out
p(f"## Results of {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}" + (" (QUICK smoke run: sizes are not meaningful)" if quick == "1" else ""))
p()
p(f"Machine: {sh('nproc')} cores, {cpu_model()}, {mem_total()} memory, {sh('uname -sr')}. "
  f"Every server: llama.cpp threads {threads}, {num_ctx} context tokens per sequence; "
  f"{np_} sequences for HyperLlama and the tuned llama-server. Raw results: `{shown_out}/`.")
p()
p("Models:")
p()
for m in models:
    f = files.get(m, m)
    path = os.path.join(models_dir, f)
    digest = sha256(path) if os.path.exists(path) else "missing"
    p(f"- `{m}`: {f}, sha256 `{digest}`")
p()
p("llama.cpp baseline (`build/llama.cpp/PROVENANCE`, written by scripts/build-llama-server.sh):")
p()
p("```")
p(open(provenance).read().rstrip() if os.path.exists(provenance) else "(missing)")
p("```")
p()
p("Commands (load average before each run in brackets):")
p()
for model, label, server, bench, _json, _svg, load in runs:
    p(f"- {model} / **{label}** [{load}]")
    p(f"  - server: `{server}`")
    p(f"  - bench: `{bench}`")
p()

data = {}
for model, label, _s, _b, jpath, _svg, _l in runs:
    try:
        data[(model, label)] = metrics(json.load(open(jpath)))
    except (OSError, ValueError) as e:
        data[(model, label)] = {}
        p(f"(could not read {jpath}: {e})")

for m in models:
    p(f"### {m}")
    p()
    cmp_md = os.path.join(out, f"{m}-compare.md")
    if os.path.exists(cmp_md) and os.path.getsize(cmp_md) > 0:
        p(open(cmp_md).read().rstrip())
    else:
        p("(no `hyperllama bench compare` table)")
    p()
    for label in ("hyperllama", "hyperllama-nospec", "llama-server-np1", "llama-server-np16"):
        if os.path.exists(os.path.join(out, f"{m}-{label}.svg")):
            p(f"Plot: `{shown_out}/{m}-{label}.svg`  ")
    p()

    def get(label, wl, metric):
        return data.get((m, label), {}).get(wl, {}).get(metric)

    def ratio(a, b):
        return a / b if a is not None and b not in (None, 0) else None

    def line(text, value, ok):
        shown = "not computable (missing numbers)" if value is None else f"{value:.2f}"
        verdict = "" if value is None else (" — **pass**" if ok(value) else " — **FAIL**")
        p(f"- {text}: {shown}{verdict}")

    p("Targets:")
    p()
    hl_sp = get("hyperllama", "shared-prefix", "throughput")
    line("shared 500-token system prompt, 16 users: throughput / llama-server -np 1 (target ≥ 4)",
         ratio(hl_sp, get("llama-server-np1", "shared-prefix", "throughput")), lambda v: v >= 4)
    per_stream = get("hyperllama", "shared-prefix", "decode")
    np1_sp = get("llama-server-np1", "shared-prefix", "throughput")
    if per_stream is not None and np1_sp:
        users = int(os.environ.get("USERS") or 16)
        p(f"  - (the ceiling on this machine: were every prompt free, {users} streams decoding at the "
          f"measured {per_stream:.1f} tokens/s each would give {users * per_stream:.0f} tokens/s, "
          f"{users * per_stream / np1_sp:.2f}× llama-server -np 1)")
    line("shared 500-token system prompt, 16 users: throughput / llama-server -np 16 -kvu (target ≥ 1.3)",
         ratio(hl_sp, get("llama-server-np16", "shared-prefix", "throughput")), lambda v: v >= 1.3)
    line("single stream: tokens/s / llama-server -np 1 (target ≥ 0.97)",
         ratio(get("hyperllama", "single", "throughput"), get("llama-server-np1", "single", "throughput")),
         lambda v: v >= 0.97)
    line("multi-turn: turn-2 TTFT / turn-1 TTFT (target ≤ 0.25)",
         ratio(get("hyperllama", "multi-turn", "turn2_ttft"), get("hyperllama", "multi-turn", "turn1_ttft")),
         lambda v: v <= 0.25)
    line("long prompt: decoders' p99 ITL / median ITL (target ≤ 3)",
         ratio(get("hyperllama", "long-prompt", "decoder_itl_p99"), get("hyperllama", "long-prompt", "decoder_itl_p50")),
         lambda v: v <= 3)
    copied = get("hyperllama", "grounded", "copied")
    line("input-grounded (copy a given text, one stream): decoding tokens/s / llama-server -np 1 "
         f"(target ≥ 2; {copied * 100:.0f}% of the answers' words quote the text)" if copied is not None
         else "input-grounded (copy a given text, one stream): decoding tokens/s / llama-server -np 1 (target ≥ 2)",
         ratio(get("hyperllama", "grounded", "decode"), get("llama-server-np1", "grounded", "decode")),
         lambda v: v >= 2)
    # Speculation may not cost: every workload's throughput with it on / with it off.
    keys = sorted(set(data.get((m, "hyperllama"), {})) & set(data.get((m, "hyperllama-nospec"), {})))
    worst = None
    for k in keys:
        v = ratio(get("hyperllama", k, "throughput"), get("hyperllama-nospec", k, "throughput"))
        if v is not None and (worst is None or v < worst[1]):
            worst = (k, v)
    if worst is not None:
        line(f"speculation on / off, the worst workload ({worst[0]}; of {', '.join(keys)}): throughput "
             "(target ≥ 0.97)", worst[1], lambda v: v >= 0.97)
        drafted = get("hyperllama", worst[0], "drafted")
        if drafted is not None:
            # A row without drafts runs the same steps either way: its ratio is run-to-run noise.
            p(f"  - (draft tokens verified in that workload with speculation on: {int(drafted)})")
    served, refused = get("hyperllama", "burst", "served"), get("hyperllama", "burst", "refused")
    if served is not None:
        alive = get("hyperllama", "burst", "alive_after") == 1
        p(f"- burst of {int(served + (refused or 0) + (get('hyperllama', 'burst', 'errors') or 0) - (refused or 0))} requests: "
          f"{int(served)} served, {int(refused or 0)} refused with 503 (queue limit), server "
          f"{'answering' if alive else 'NOT answering'} afterwards — **{'pass' if alive and refused else 'FAIL'}**")
    freed, before = get("hyperllama", "disconnect", "kv_freed_ms"), get("hyperllama", "disconnect", "kv_before")
    if freed is not None:
        ok = freed >= 0
        p(f"- clients disconnecting mid-stream: {int(before or 0)} KV cells in use, free again "
          f"{freed:.0f} ms after the clients left — **{'pass' if ok else 'FAIL'}**")
    v = ratio(get("llama-server-np16", "multi-turn", "turn2_ttft"), get("llama-server-np16", "multi-turn", "turn1_ttft"))
    if v is not None:
        p(f"- (for reference, llama-server -np 16 -kvu: multi-turn turn-2 / turn-1 TTFT {v:.2f})")
    v = ratio(get("llama-server-np16", "long-prompt", "decoder_itl_p99"), get("llama-server-np16", "long-prompt", "decoder_itl_p50"))
    if v is not None:
        p(f"- (for reference, llama-server -np 16 -kvu: long prompt decoders' p99 / median ITL {v:.2f})")
    p()
PY

say "wrote $out/report.md"
if [ "$docs" = 1 ]; then
    python3 - docs/benchmarks.md "$out/report.md" <<'PY'
import sys
doc_path, report_path = sys.argv[1:3]
begin, end = "<!-- BEGIN GENERATED by scripts/bench-baseline.sh -->", "<!-- END GENERATED -->"
doc = open(doc_path).read()
report = open(report_path).read().rstrip("\n")
if begin in doc and end in doc:
    head, rest = doc.split(begin, 1)
    tail = rest.split(end, 1)[1]
else:
    head, tail = doc.rstrip("\n") + "\n\n", "\n"
open(doc_path, "w").write(f"{head}{begin}\n{report}\n{end}{tail}")
PY
    say "updated docs/benchmarks.md"
fi
echo "$out"
[ "${#failed[@]}" -eq 0 ] || die "bench failed for: ${failed[*]}"
