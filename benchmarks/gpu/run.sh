#!/usr/bin/env bash
# One-shot measurement of what llama.cpp's CUDA backend allocates for Gemma 3 4B/12B/27B shapes.
#
#   OUT=/some/dir bash benchmarks/gpu/run.sh   (needs nvcc, cmake, ninja; python3 only for parse_log.py)
#
# 1. builds benchmarks/gpu/ (vendor/llama.cpp 0c1e57098 + mtmd + alloc-probe) with CUDA for sm_90 -> $OUT/build.log
# 2. extends the shipped GGUF headers (make_ggufs.py, make_mmproj.py) to sparse full-size files
# 3. runs alloc-probe once per case, each under its own timeout, all output    -> $OUT/alloc.log
#    with nvidia-smi memory.used before / after / peak (100 ms samples) per case
# 4. parses the log                                                            -> $OUT/alloc.json
# The whole script keeps to DEADLINE seconds (default 515): cases that no longer fit are skipped,
# and alloc.json is rewritten after every case, so a kill at any point still leaves results.
set -u
SECONDS=0
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${OUT:?set OUT to the output folder}"
mkdir -p "$OUT"
WORK=${GPU_WORK:-$HERE/work}
BUILD=$WORK/build
GGUFS=$WORK/ggufs
DEADLINE=${DEADLINE:-455}
CASE_TIMEOUT=${CASE_TIMEOUT:-60}
JOBS=${JOBS:-$(nproc)}
CUDA_ARCH=${CUDA_ARCH:-90-real}
LOG=$OUT/alloc.log
ENVF=$OUT/env.txt
PY=${PYTHON:-python3}
mkdir -p "$WORK" "$GGUFS"
: > "$LOG"

say() { printf '[run.sh %4ds] %s\n' "$SECONDS" "$*"; }

# ---------------------------------------------------------------- environment
if ! command -v nvcc >/dev/null 2>&1; then
  for d in /usr/local/cuda/bin /usr/local/cuda-13*/bin /opt/cuda/bin; do
    if [ -x "$d/nvcc" ]; then export PATH="$d:$PATH"; break; fi
  done
fi
{
  echo "date: $(date -u)"; echo "host: $(uname -a)"; echo "nproc: $(nproc)"
  free -g 2>&1 | head -3; df -h "$WORK" 2>&1 | tail -1
  echo "--- nvcc"; nvcc --version 2>&1 | tail -3
  echo "--- cmake"; cmake --version 2>&1 | head -1; echo "ninja $(ninja --version 2>&1)"
  echo "--- c++"; c++ --version 2>&1 | head -1
  echo "--- python"; $PY -c 'import sys, numpy; print(sys.version.split()[0], "numpy", numpy.__version__)' 2>&1
  echo "--- nvidia-smi"; nvidia-smi 2>&1 | head -20
  echo "--- nvidia-smi --query-gpu=memory.used --format=csv (start)"; nvidia-smi --query-gpu=memory.used --format=csv 2>&1
} > "$ENVF" 2>&1
say "env written to $ENVF ($(nvcc --version 2>/dev/null | grep -o 'release [0-9.]*' || echo 'nvcc NOT FOUND'))"

# ---------------------------------------------------------------- GGUFs (sparse: header + a hole)
# The headers were written by make_ggufs.py / make_mmproj.py on the preparing machine (their
# manifests are tests/data/cuda_alloc/); here each is extended to its full size with a hole.
(
  t0=$SECONDS
  { tar -xJf "$HERE/vendor/ggufs-headers.tar.xz" -C "$GGUFS" 2>/dev/null ||
    $PY -c 'import sys, tarfile; tarfile.open(sys.argv[1]).extractall(sys.argv[2])' "$HERE/vendor/ggufs-headers.tar.xz" "$GGUFS"; } &&
  while read -r f size; do truncate -s "$size" "$GGUFS/$f" || exit 1; done < "$GGUFS/SIZES"
  echo "rc=$? seconds=$((SECONDS - t0))" > "$WORK/make_ggufs.log"
) &
GEN_PID=$!

# ---------------------------------------------------------------- build
BT0=$SECONDS
if [ -n "${PROBE_BIN:-}" ]; then   # test hook: use an already built probe, skip the build
  say "using prebuilt $PROBE_BIN (no build)"; CFG_RC=0; BUILD_RC=0; PROBE=$PROBE_BIN
else
say "configure (CUDA arch $CUDA_ARCH, -j $JOBS)"
cmake -S "$HERE" -B "$BUILD" -G Ninja \
  -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA="${GGML_CUDA:-ON}" -DCMAKE_CUDA_ARCHITECTURES="$CUDA_ARCH" \
  -DGGML_NATIVE=OFF -DGGML_CCACHE=OFF -DGGML_CUDA_NCCL=OFF -DLLAMA_OPENSSL=OFF \
  > "$OUT/build.log" 2>&1
CFG_RC=$?
BUILD_RC=1
if [ $CFG_RC -eq 0 ]; then
  say "configure ok ($((SECONDS - BT0))s); building target alloc-probe"
  BLEFT=$((DEADLINE - SECONDS - 25)); [ $BLEFT -lt 30 ] && BLEFT=30
  timeout -k 5 "$BLEFT" cmake --build "$BUILD" -j "$JOBS" --target alloc-probe >> "$OUT/build.log" 2>&1
  BUILD_RC=$?
else
  say "CONFIGURE FAILED rc=$CFG_RC"
fi
cp "$BUILD/.ninja_log" "$OUT/ninja_log.txt" 2>/dev/null || true
PROBE=$BUILD/alloc-probe
fi
BUILD_S=$((SECONDS - BT0))
echo "configure_rc=$CFG_RC build_rc=$BUILD_RC build_seconds=$BUILD_S" >> "$ENVF"
if [ $BUILD_RC -ne 0 ] || [ ! -x "$PROBE" ]; then
  say "BUILD FAILED rc=$BUILD_RC after ${BUILD_S}s (124 = timed out); last lines of build.log:"
  grep -n -i -E 'error|fatal' "$OUT/build.log" | head -20
  tail -40 "$OUT/build.log"
  wait $GEN_PID; cat "$WORK/make_ggufs.log"
  exit 1
fi
say "build ok in ${BUILD_S}s ($(grep -c '\.cu\.o' "$OUT/ninja_log.txt" 2>/dev/null) CUDA objects)"

wait $GEN_PID
cat "$WORK/make_ggufs.log"
if ! grep -q '^rc=0' "$WORK/make_ggufs.log"; then say "GGUF GENERATION FAILED"; exit 1; fi

# ---------------------------------------------------------------- cases
smi() { nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits 2>/dev/null | head -1 | tr -d ' '; }
N_OK=0; N_FAIL=0; N_SKIP=0
run_case() {  # name model-file probe-args...
  local name=$1 model=$2; shift 2
  if [ -n "${ONLY:-}" ] && ! [[ $name =~ $ONLY ]]; then return; fi   # test hook: run a subset
  local left=$((DEADLINE - SECONDS - 8))
  if [ $left -lt 20 ]; then
    say "SKIP $name (only ${left}s left)"; echo "=== SKIP name=$name ===" >> "$LOG"; N_SKIP=$((N_SKIP + 1)); return
  fi
  local to=$CASE_TIMEOUT; [ $to -gt $left ] && to=$left
  local before; before=$(smi)
  local samp="$WORK/smi.$name"
  nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits -lms 100 > "$samp" 2>/dev/null &
  local spid=$!
  echo "=== CASE name=$name model=$model timeout_s=$to args=\"$*\" ===" >> "$LOG"
  local t0; t0=$(date +%s.%N)
  timeout -k 5 "$to" "$PROBE" -m "$GGUFS/$model" "$@" >> "$LOG" 2>&1
  local rc=$?
  local wall; wall=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')
  kill $spid 2>/dev/null; wait $spid 2>/dev/null
  local after; after=$(smi)
  local peak; peak=$(tr -d ' ' < "$samp" | grep -E '^[0-9]+$' | sort -n | tail -1)
  echo "=== END name=$name rc=$rc wall_s=$wall smi_before_mib=${before:-NA} smi_after_mib=${after:-NA} smi_peak_mib=${peak:-NA} smi_samples=$(wc -l < "$samp") ===" >> "$LOG"
  if [ $rc -eq 0 ]; then N_OK=$((N_OK + 1)); else N_FAIL=$((N_FAIL + 1)); fi
  say "$name rc=$rc wall=${wall}s smi before/peak/after=${before:-NA}/${peak:-NA}/${after:-NA} MiB"
  $PY "$HERE/parse_log.py" "$LOG" "$OUT/alloc.json" > /dev/null 2>&1 || true
}

Q=q4_0
MM4="--mmproj $GGUFS/mmproj-4b-f16.gguf"; MM12="--mmproj $GGUFS/mmproj-12b-f16.gguf"; MM27="--mmproj $GGUFS/mmproj-27b-f16.gguf"
# ---- new cases (issue 17, second run), most useful first
# the projector on the GPU (mtmd, as llama-server --mmproj), flash attention on/off, on the CPU
run_case "4b_${Q}_c4096_fa_mmproj"        "gemma3-4b-${Q}.gguf"  -ngl 99 -c 4096  -fa on  $MM4
run_case "27b_${Q}_c32768_fa_mmproj"      "gemma3-27b-${Q}.gguf" -ngl 99 -c 32768 -fa on  $MM27
run_case "4b_${Q}_c4096_nofa_mmproj"      "gemma3-4b-${Q}.gguf"  -ngl 99 -c 4096  -fa off $MM4
run_case "12b_${Q}_c32768_fa_mmproj"      "gemma3-12b-${Q}.gguf" -ngl 99 -c 32768 -fa on  $MM12
run_case "4b_${Q}_c4096_fa_mmproj_cpu"    "gemma3-4b-${Q}.gguf"  -ngl 99 -c 4096  -fa on  $MM4 --no-mmproj-offload
run_case "27b_${Q}_c32768_fa_ngl40_mmproj" "gemma3-27b-${Q}.gguf" -ngl 40 -c 32768 -fa on $MM27
# partial offload
run_case "27b_${Q}_c32768_fa_ngl0"        "gemma3-27b-${Q}.gguf" -ngl 0  -c 32768 -fa on
run_case "27b_${Q}_c32768_fa_ngl20"       "gemma3-27b-${Q}.gguf" -ngl 20 -c 32768 -fa on
run_case "27b_${Q}_c32768_fa_ngl62"       "gemma3-27b-${Q}.gguf" -ngl 62 -c 32768 -fa on
run_case "12b_${Q}_c131072_fa_ngl24"      "gemma3-12b-${Q}.gguf" -ngl 24 -c 131072 -fa on
run_case "4b_${Q}_c32768_fa_ngl10"        "gemma3-4b-${Q}.gguf"  -ngl 10 -c 32768 -fa on
run_case "12b_${Q}_c32768_nofa_ngl30"     "gemma3-12b-${Q}.gguf" -ngl 30 -c 32768 -fa off
# micro-batch
run_case "4b_${Q}_c32768_fa_ub256"        "gemma3-4b-${Q}.gguf"  -ngl 99 -c 32768 -fa on -ub 256
run_case "4b_${Q}_c32768_fa_ub1024"       "gemma3-4b-${Q}.gguf"  -ngl 99 -c 32768 -fa on -ub 1024
run_case "4b_${Q}_c32768_fa_ub2048"       "gemma3-4b-${Q}.gguf"  -ngl 99 -c 32768 -fa on -ub 2048
run_case "27b_${Q}_c32768_fa_ub1024"      "gemma3-27b-${Q}.gguf" -ngl 99 -c 32768 -fa on -ub 1024
run_case "12b_${Q}_c131072_fa_ub128"      "gemma3-12b-${Q}.gguf" -ngl 99 -c 131072 -fa on -ub 128
run_case "1b_${Q}_c32768_fa_ub1024"       "gemma3-1b-${Q}.gguf"  -ngl 99 -c 32768 -fa on -ub 1024
run_case "27b_${Q}_c8192_nofa_ub1024"     "gemma3-27b-${Q}.gguf" -ngl 99 -c 8192  -fa off -ub 1024
# KV types, flash attention off, sequences
run_case "4b_${Q}_c131072_fa_kvq4"        "gemma3-4b-${Q}.gguf"  -ngl 99 -c 131072 -fa on -ctk q4_0 -ctv q4_0
run_case "27b_${Q}_c131072_fa_kvq8"       "gemma3-27b-${Q}.gguf" -ngl 99 -c 131072 -fa on -ctk q8_0 -ctv q8_0
run_case "12b_${Q}_c32768_fa_kq8"         "gemma3-12b-${Q}.gguf" -ngl 99 -c 32768 -fa on -ctk q8_0
run_case "4b_${Q}_c32768_nofa"            "gemma3-4b-${Q}.gguf"  -ngl 99 -c 32768 -fa off
run_case "12b_${Q}_c131072_nofa"          "gemma3-12b-${Q}.gguf" -ngl 99 -c 131072 -fa off
run_case "27b_${Q}_c4096_nofa"            "gemma3-27b-${Q}.gguf" -ngl 99 -c 4096  -fa off
run_case "12b_${Q}_c32768_fa_np4"         "gemma3-12b-${Q}.gguf" -ngl 99 -c 32768 -fa on -np 4
run_case "4b_${Q}_c16384_fa_np4_kvu"      "gemma3-4b-${Q}.gguf"  -ngl 99 -c 16384 -fa on -np 4 --kv-unified
run_case "27b_${Q}_c65536_fa_np2"         "gemma3-27b-${Q}.gguf" -ngl 99 -c 65536 -fa on -np 2
# other files: Q8_0 (the README table's third quant), 270M, 1B Q4_K_M
for m in 4b 12b 27b; do run_case "${m}_q8_0_c32768_fa" "gemma3-${m}-q8_0.gguf" -ngl 99 -c 32768 -fa on; done
run_case "270m_${Q}_c32768_fa"            "gemma3-270m-${Q}.gguf" -ngl 99 -c 32768 -fa on
run_case "1b_q4_k_m_c8192_fa"             "gemma3-1b-q4_k_m.gguf" -ngl 99 -c 8192 -fa on
run_case "12b_q8_0_c131072_fa_mmproj"     "gemma3-12b-q8_0.gguf" -ngl 99 -c 131072 -fa on $MM12
# ---- the first run's 21 cases again (reproducibility), while time remains
for c in 4096 32768 131072; do
  for m in 4b 12b 27b; do run_case "${m}_${Q}_c${c}_fa" "gemma3-${m}-${Q}.gguf" -ngl 99 -c $c -fa on; done
done
run_case "27b_${Q}_c32768_nofa"     "gemma3-27b-${Q}.gguf" -ngl 99 -c 32768 -fa off
run_case "12b_${Q}_c32768_fa_kvq8"  "gemma3-12b-${Q}.gguf" -ngl 99 -c 32768 -fa on -ctk q8_0 -ctv q8_0
run_case "4b_${Q}_c8192_fa_np2"     "gemma3-4b-${Q}.gguf"  -ngl 99 -c 8192  -fa on -np 2
run_case "27b_${Q}_c32768_fa_ngl40" "gemma3-27b-${Q}.gguf" -ngl 40 -c 32768 -fa on
for m in 4b 12b 27b; do run_case "${m}_q4_k_m_c32768_fa" "gemma3-${m}-q4_k_m.gguf" -ngl 99 -c 32768 -fa on; done
run_case "1b_${Q}_c32768_fa"           "gemma3-1b-${Q}.gguf"  -ngl 99 -c 32768 -fa on
run_case "4b_${Q}_c32768_fa_swafull"   "gemma3-4b-${Q}.gguf"  -ngl 99 -c 32768 -fa on --swa-full

echo "--- nvidia-smi --query-gpu=memory.used --format=csv (end)" >> "$ENVF"; nvidia-smi --query-gpu=memory.used --format=csv >> "$ENVF" 2>&1
$PY "$HERE/parse_log.py" "$LOG" "$OUT/alloc.json" > "$OUT/summary.txt" 2>&1
cat "$OUT/summary.txt"
say "done: ok=$N_OK failed=$N_FAIL skipped=$N_SKIP build=${BUILD_S}s total=${SECONDS}s"
