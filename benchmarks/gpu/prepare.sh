#!/usr/bin/env bash
# Prepare benchmarks/gpu/vendor/ (git-ignored) on any machine, before run.sh goes to a CUDA machine:
#   bash benchmarks/gpu/prepare.sh SDIST.tar.gz REAL_GEMMA3.gguf
# SDIST: llama-cpp-python 0.3.36's sdist (llama.cpp 0c1e57098, the version the tests build).
# REAL_GEMMA3.gguf: any real Gemma 3 GGUF, for its tokenizer (e.g. the 270M Q4_K_M the tests use).
# Writes vendor/llama.cpp (pruned: CMake, include, src, ggml CPU+CUDA, vendor/, tools/mtmd),
# vendor/gguf-py, vendor/gemma3_tokenizer.npz and vendor/ggufs-headers.tar.xz (the headers of every
# file run.sh needs: make_ggufs.py + make_mmproj.py; run.sh extends them to sparse full-size files).
# Carry to the GPU machine: vendor/llama.cpp and vendor/ggufs-headers.tar.xz (~22 MB).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SDIST=$1; TOKSRC=$2; PY=${PYTHON:-python3}
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
tar -xzf "$SDIST" -C "$TMP"
S=$(echo "$TMP"/llama_cpp_python-*/vendor/llama.cpp); V=$HERE/vendor; D=$V/llama.cpp
rm -rf "$D" "$V/gguf-py"; mkdir -p "$D/tools" "$D/ggml/src"
cp -r "$S"/{CMakeLists.txt,LICENSE,cmake,include,src,vendor} "$D/"
cp -r "$S/tools/mtmd" "$D/tools/"; rm -rf "$D"/tools/mtmd/{tests,legacy-models} "$D"/tools/mtmd/test-*
cp -r "$S"/ggml/{CMakeLists.txt,cmake,include} "$D/ggml/"
find "$S/ggml/src" -maxdepth 1 -type f -exec cp {} "$D/ggml/src/" \;
cp -r "$S/ggml/src/ggml-cpu" "$S/ggml/src/ggml-cuda" "$D/ggml/src/"
cp -r "$S/gguf-py" "$V/gguf-py"; rm -rf "$V/gguf-py/scripts" "$V/gguf-py/tests"
$PY "$HERE/extract_tokenizer.py" "$TOKSRC" "$V/gemma3_tokenizer.npz"
G=$TMP/ggufs; mkdir -p "$G/hdr"
$PY "$HERE/make_ggufs.py" --out "$G" --models 270m,1b,4b,12b,27b --ftypes q4_0,q4_k_m,q8_0 --manifest "$G/manifest.json"
$PY "$HERE/make_mmproj.py" --out "$G" --manifest "$G/mmproj.json"
$PY - "$G" <<'PYEOF'
import json, os, sys
g = sys.argv[1]
files = json.load(open(f"{g}/manifest.json"))["files"] + json.load(open(f"{g}/mmproj.json"))["files"]
with open(f"{g}/hdr/SIZES", "w") as sizes:
    for f in files:
        with open(f"{g}/{f['file']}", "rb") as i, open(f"{g}/hdr/{f['file']}", "wb") as o:
            o.write(i.read(f["data_offset"]))
        sizes.write(f"{f['file']} {f['file_size']}\n")
PYEOF
(cd "$G/hdr" && tar -cJf "$V/ggufs-headers.tar.xz" *)
cp "$G/manifest.json" "$HERE/../../tests/data/cuda_alloc/manifest.json"
echo "vendor ready: $(du -sh "$V/llama.cpp" "$V/ggufs-headers.tar.xz" | tr '\n' ' ')"
