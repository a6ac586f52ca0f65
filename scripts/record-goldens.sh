#!/usr/bin/env bash
# Records llama.cpp's own greedy output as golden files for the fidelity test
# (crates/hyperllama-engine/tests/model_engine.rs), after `cargo build`. Into GOLDENS_DIR
# (default tests/golden/fidelity/, the committed recording): scripts/test.sh records them
# into build/goldens/ on the machine that runs the tests, since llama.cpp's CPU kernels
# round differently on different CPUs (an AMD EPYC host diverged from the committed
# recording within a few dozen tokens in three of ten cases, as llama.cpp itself does).
#
# The tool is llama.cpp's `examples/simple` ("llama-simple": tokenize with special tokens,
# one batch for the prompt, greedy sampling, the plain decode loop), compiled from the
# llama-cpp-python==0.3.36 source distribution (the sys crate's vendored copy omits the
# examples) and linked against the llama.cpp libraries that OUR build of llama-cpp-sys-2
# produced, so that both sides run the very same kernels.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
models="$(scripts/fetch-models.sh)"
n_predict=48
goldens="${GOLDENS_DIR:-tests/golden/fidelity}"
mkdir -p "$goldens"

# The newest build of the sys crate (a check build has its own).
lib="$(ls -td target/debug/build/llama-cpp-sys-2-*/out/lib 2>/dev/null | head -1)"
[ -n "$lib" ] || { echo "build the project first (cargo build)" >&2; exit 1; }
sys_src="$(cargo metadata --format-version 1 | python3 -c '
import json, sys, os
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "llama-cpp-sys-2")
print(os.path.join(os.path.dirname(p["manifest_path"]), "llama.cpp"))')"

mkdir -p build
if [ ! -x build/llama-simple ] || [ "$lib/libllama.a" -nt build/llama-simple ]; then
    tmp="$(mktemp -d)"
    python3 -m pip download --quiet --no-deps --no-binary :all: -d "$tmp" llama-cpp-python==0.3.36
    tar -xzf "$tmp"/llama_cpp_python-0.3.36.tar.gz -C "$tmp"
    g++ -O2 -std=c++17 "$tmp"/llama_cpp_python-0.3.36/vendor/llama.cpp/examples/simple/simple.cpp \
        -I"$sys_src/include" -I"$sys_src/ggml/include" \
        "$lib"/libllama.a "$lib"/libggml.a "$lib"/libggml-cpu.a "$lib"/libggml-base.a \
        -fopenmp -lpthread -o build/llama-simple
    rm -rf "$tmp"
fi

record() { # name model-file prompt
    python3 - "$1" "$2" "$3" "$n_predict" "$models" "$goldens" <<'PY'
import json, subprocess, sys
name, model, prompt, n_predict, models, goldens = sys.argv[1:7]
command = ["build/llama-simple", "-m", f"{models}/{model}", "-n", n_predict, prompt]
stdout = subprocess.run(command, check=True, capture_output=True).stdout.decode("utf-8")
# llama-simple prints the prompt (special tokens rendered, e.g. a leading <bos>), then the
# answer, then one newline of its own.
at = stdout.index(prompt)
assert stdout.endswith("\n")
output = stdout[at + len(prompt):-1]
shown = " ".join(["build/llama-simple", "-m", f"$MODELS/{model}", "-n", n_predict, json.dumps(prompt)])
with open(f"{goldens}/{name}.json", "w") as f:
    json.dump({"model": model, "prompt": prompt, "n_predict": int(n_predict),
               "tool": "llama.cpp examples/simple (llama-simple), greedy",
               "command": shown, "output": output}, f, indent=2, ensure_ascii=False)
    f.write("\n")
print(f"recorded {name}", file=sys.stderr)
PY
}

for m in smollm2:SmolLM2-135M-Instruct.Q4_1.gguf gemma3:gemma-3-270m-q4_k_m.gguf; do
    tag=${m%%:*}; file=${m#*:}
    record "$tag-capital" "$file" "The capital of France is"
    record "$tag-code" "$file" "def fibonacci(n):"
    record "$tag-story" "$file" "Once upon a time, in a small village,"
    record "$tag-unicode" "$file" "Le café au lait, c'est"
done
record smollm2-chat SmolLM2-135M-Instruct.Q4_1.gguf $'<|im_start|>user\nWhat is the boiling point of water?<|im_end|>\n<|im_start|>assistant\n'
record gemma3-chat gemma-3-270m-q4_k_m.gguf $'<start_of_turn>user\nName a primary color.<end_of_turn>\n<start_of_turn>model\n'
