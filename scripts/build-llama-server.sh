#!/usr/bin/env bash
# Builds llama.cpp's own `llama-server` (plus `llama-batched-bench` and `llama-bench`, same
# cmake run) as the baseline that scripts/bench-baseline.sh measures HyperLlama against.
# CPU only, Release, native (-DGGML_NATIVE=ON, as our .cargo/config.toml builds the sys crate
# with target-cpu=native), static libraries, no CURL, no OpenSSL, no web UI.
#
# The kernels must be the ones we run, so the source is the llama.cpp tree that our sys crate
# (llama-cpp-sys-2) vendors. That copy has src/, ggml/, common/ and vendor/ but its tools/
# sources are stripped, so the missing tool sources are overlaid from the llama.cpp tree
# vendored in the llama-cpp-python source distribution (same release as
# scripts/record-goldens.sh uses; a slightly older llama.cpp commit). Routes, tried in order
# (LLAMA_SERVER_ROUTE=<route> forces one):
#
#   overlay-common  sys crate tree with the sdist's tools/ and common/: the server and its helper
#                   library from one commit. Works for sys crate 0.1.161 + sdist 0.3.36.
#   overlay-tools   sys crate tree with the sdist's tools/ only (the server, mtmd, the benches).
#                   Fails for 0.1.161 + 0.3.36: the newer common/ lacks fs_open_ifstream, which
#                   tools/server/server-mcp.cpp calls.
#   sdist           the sdist's llama.cpp tree as is (other kernels: last resort)
#
# Every route keeps the sys crate's ggml/ and src/: the kernels are ours except with `sdist`.
# Output (never committed): build/llama.cpp/{src-tree,cmake-build,bin,build.log,PROVENANCE}.
# Idempotent: skips the build when every binary exists and the stamp (sys crate version,
# sdist version, cmake flags) matches. Set LLAMA_CPP_PYTHON_SRC to an unpacked
# llama_cpp_python-<version> directory to skip the download; LLAMA_BUILD_JOBS (default 2).
# Prints the bin directory on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out="$root/build/llama.cpp"
bin="$out/bin"
log="$out/build.log"
mkdir -p "$out"

LCP_VERSION=0.3.36       # llama-cpp-python source distribution that provides tools/
LCP_LLAMA_COMMIT=0c1e57098 # the llama.cpp commit it vendors (its CHANGELOG)
TARGETS=(llama-server llama-batched-bench llama-bench)
jobs="${LLAMA_BUILD_JOBS:-2}"

FLAGS=(
    -DCMAKE_BUILD_TYPE=Release
    -DGGML_NATIVE=ON
    -DBUILD_SHARED_LIBS=OFF
    -DLLAMA_CURL=OFF
    -DLLAMA_OPENSSL=OFF
    -DLLAMA_BUILD_COMMON=ON
    -DLLAMA_BUILD_TOOLS=ON
    -DLLAMA_BUILD_SERVER=ON
    -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF
    -DLLAMA_BUILD_APP=OFF
    -DLLAMA_BUILD_UI=OFF
    -DLLAMA_USE_PREBUILT_UI=OFF
)

say() { echo "build-llama-server: $*" >&2; }

# The llama.cpp directory vendored by the llama-cpp-sys-2 version in Cargo.lock.
sys_src="$(cargo metadata --format-version 1 2>/dev/null | python3 -c '
import json, sys, os
m = json.load(sys.stdin)
p = next(p for p in m["packages"] if p["name"] == "llama-cpp-sys-2")
print(os.path.join(os.path.dirname(p["manifest_path"]), "llama.cpp"))')"
[ -f "$sys_src/CMakeLists.txt" ] || { say "no llama.cpp tree at $sys_src"; exit 1; }
sys_crate="$(basename "$(dirname "$sys_src")")" # llama-cpp-sys-2-<version>
sys_git="$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["git"]["sha1"])' \
    "$(dirname "$sys_src")/.cargo_vcs_info.json" 2>/dev/null || echo unknown)"

version_of() { # llama.cpp-dir -> "llama X.Y.Z, ggml X.Y.Z" from the CMakeLists
    local l g
    l="$(sed -n 's/^set(LLAMA_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$1/CMakeLists.txt" | paste -sd.)"
    g="$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$1/ggml/CMakeLists.txt" | paste -sd.)"
    echo "llama $l, ggml $g"
}

stamp="$(printf '%s\n' "$sys_crate" "llama-cpp-python-$LCP_VERSION" "${FLAGS[@]}" "${TARGETS[@]}" \
    | sha256sum | cut -d' ' -f1)"

have_all() {
    local t
    for t in "${TARGETS[@]}"; do [ -x "$bin/$t" ] || return 1; done
    [ -f "$out/STAMP" ] && [ "$(cat "$out/STAMP")" = "$stamp" ]
}
if have_all && [ -z "${LLAMA_SERVER_ROUTE:-}" ]; then
    say "up to date ($(sed -n 's/^route: //p' "$out/PROVENANCE" 2>/dev/null))"
    echo "$bin"
    exit 0
fi

# The sdist's llama.cpp tree: given, cached under build/llama.cpp/sdist, or downloaded.
if [ -n "${LLAMA_CPP_PYTHON_SRC:-}" ]; then
    lcp="$LLAMA_CPP_PYTHON_SRC/vendor/llama.cpp"
else
    lcp="$out/sdist/llama_cpp_python-$LCP_VERSION/vendor/llama.cpp"
    if [ ! -f "$lcp/tools/server/server.cpp" ]; then
        say "downloading the llama-cpp-python $LCP_VERSION source distribution ..."
        rm -rf "$out/sdist"
        mkdir -p "$out/sdist"
        python3 -m pip download --quiet --no-deps --no-binary :all: -d "$out/sdist" \
            "llama-cpp-python==$LCP_VERSION" >&2
        tar -xzf "$out/sdist/llama_cpp_python-$LCP_VERSION.tar.gz" -C "$out/sdist"
    fi
fi
[ -f "$lcp/tools/server/server.cpp" ] || { say "no tools/server sources in $lcp"; exit 1; }

src="$out/src-tree"
stage="$out/stage"
bld="$out/cmake-build"

# prepare ROUTE: lays the route's tree out in $stage, then syncs it into $src by content: a file
# is rewritten (and so gets a new mtime) only when its bytes differ, so the one cmake build
# directory is reused across routes and rebuilds only what changed (ggml is built once).
prepare() {
    rm -rf "$stage"
    case "$1" in
        overlay-tools)
            cp -a "$sys_src" "$stage"
            chmod -R u+w "$stage"
            rm -rf "$stage/tools"
            cp -a "$lcp/tools" "$stage/"
            ;;
        overlay-common)
            cp -a "$sys_src" "$stage"
            chmod -R u+w "$stage"
            rm -rf "$stage/common" "$stage/tools"
            cp -a "$lcp/common" "$lcp/tools" "$stage/"
            ;;
        sdist)
            cp -a "$lcp" "$stage"
            chmod -R u+w "$stage"
            ;;
        *) say "unknown route $1"; exit 1 ;;
    esac
    # tools/ui/CMakeLists.txt runs this script to embed the (here: absent) UI assets.
    mkdir -p "$stage/scripts"
    [ -f "$stage/scripts/ui-assets.cmake" ] || cp "$lcp/scripts/ui-assets.cmake" "$stage/scripts/"
    python3 - "$stage" "$src" <<'PY'
import filecmp, os, shutil, sys
stage, dest = sys.argv[1:3]
keep = set()
for dirpath, _dirs, files in os.walk(stage):
    rel = os.path.relpath(dirpath, stage)
    os.makedirs(os.path.join(dest, rel), exist_ok=True)
    keep.add(os.path.normpath(rel))
    for f in files:
        s, d = os.path.join(dirpath, f), os.path.join(dest, rel, f)
        if not os.path.exists(s):  # a dangling link
            continue
        keep.add(os.path.normpath(os.path.join(rel, f)))
        if os.path.islink(d) or not os.path.isfile(d) or not filecmp.cmp(s, d, shallow=False):
            if os.path.lexists(d):
                os.remove(d)
            shutil.copyfile(s, d)
            shutil.copymode(s, d)
for dirpath, dirs, files in os.walk(dest, topdown=False):
    rel = os.path.relpath(dirpath, dest)
    for f in files:
        if os.path.normpath(os.path.join(rel, f)) not in keep:
            os.remove(os.path.join(dirpath, f))
    if os.path.normpath(rel) not in keep:
        shutil.rmtree(dirpath, ignore_errors=True)
PY
    rm -rf "$stage"
}

build() { # route
    local route="$1"
    say "route $route: configuring and building ${TARGETS[*]} with -j$jobs (log: $log)"
    prepare "$route"
    {
        echo "=== route $route, $(date -u +%FT%TZ)"
        # GIT_CEILING_DIRECTORIES: keep llama.cpp's build-info from reading our own repository.
        GIT_CEILING_DIRECTORIES="$out" nice -n 19 cmake -S "$src" -B "$bld" "${FLAGS[@]}" \
            -DLLAMA_BUILD_COMMIT="$route" &&
            GIT_CEILING_DIRECTORIES="$out" nice -n 19 cmake --build "$bld" --config Release \
                -j "$jobs" --target "${TARGETS[@]}"
    } >>"$log" 2>&1
}

if [ -n "${LLAMA_SERVER_ROUTE:-}" ]; then
    routes=("$LLAMA_SERVER_ROUTE")
else
    routes=(overlay-common overlay-tools sdist)
fi

: >"$log"
start=$SECONDS
route=""
failed=()
for r in "${routes[@]}"; do
    if build "$r"; then
        route="$r"
        break
    fi
    say "route $r failed (see $log)"
    failed+=("$r")
done
[ -n "$route" ] || { say "every route failed"; exit 1; }
elapsed=$((SECONDS - start))

rm -rf "$bin"
mkdir -p "$bin"
for t in "${TARGETS[@]}"; do cp "$bld/bin/$t" "$bin/$t"; done

case "$route" in
    overlay-tools) kernels="sys crate (ggml, src, include, common); tools/ from the sdist" ;;
    overlay-common) kernels="sys crate (ggml, src, include); common/ and tools/ from the sdist" ;;
    sdist) kernels="sdist (NOT the kernels HyperLlama runs)" ;;
esac
cat >"$out/PROVENANCE" <<EOF
route: $route${failed[*]:+ (failed before it: ${failed[*]})}
kernels: $kernels
sys crate: $sys_crate (llama-cpp-rs git $sys_git), vendored llama.cpp: $(version_of "$sys_src")
sdist: llama-cpp-python $LCP_VERSION, vendored llama.cpp commit $LCP_LLAMA_COMMIT: $(version_of "$lcp")
built: $(date -u +%FT%TZ) in ${elapsed}s with -j$jobs, $(gcc --version | head -1), $(cmake --version | head -1)
cmake flags: ${FLAGS[*]}
targets: ${TARGETS[*]}
EOF
echo "$stamp" >"$out/STAMP"
say "built with route $route in ${elapsed}s"
sed 's/^/  /' "$out/PROVENANCE" >&2
echo "$bin"
