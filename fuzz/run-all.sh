#!/usr/bin/env bash
# Runs every fuzz target (or the ones named) one after the other, each for a budget, and
# prints per target: executions, coverage (libFuzzer's cov: edges and ft: features at the
# end of the run), corpus size and crashes.
#
#   fuzz/run-all.sh [-t SECONDS] [-n EXECUTIONS] [TARGET...]
#
# -t: seconds per target (default 60); -n: stop a target after this many executions
# (whichever comes first; -n alone runs without a time limit). The targets are built once
# with the stable toolchain: cargo-fuzz's build flags need RUSTC_BOOTSTRAP=1 there, and
# `--sanitizer none` (the sanitizers themselves are nightly-only; the crate forbids unsafe
# code, so what they would find is in dependencies). One process at a time, one core: no
# -jobs, no -fork. Each target starts from its committed seeds (fuzz/seeds/<target>, read
# only) and the corpus it grew before (fuzz/corpus/<target>, not committed); a crash stops
# that target and its input is left in fuzz/artifacts/<target>/ (replay it with
# `RUSTC_BOOTSTRAP=1 cargo fuzz run -O -s none <target> <file>`, or drop it into
# fuzz/seeds/<target>/ as regress-<name>: tests/fuzz_corpus.rs then replays it on stable).
#
# FUZZ_TARGET_DIR (default fuzz/target) is where the instrumented build goes; FUZZ_NICE
# (default 10) the nice level of the runs; FUZZ_BUILD=dev builds without optimizations
# (quicker to compile, slower to run: for the few-second smoke run of scripts/test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=""
runs=""
while getopts t:n: opt; do
  case $opt in
    t) seconds=$OPTARG ;;
    n) runs=$OPTARG ;;
    *) sed -n '2,8p' "$0" >&2; exit 2 ;;
  esac
done
# Without -t: 60 s, or no time limit when -n bounds the run.
[ -n "$seconds" ] || { [ -n "$runs" ] && seconds=0 || seconds=60; }
shift $((OPTIND - 1))

export RUSTC_BOOTSTRAP=1
target_dir=${FUZZ_TARGET_DIR:-fuzz/target}
case ${FUZZ_BUILD:-release} in
  release) flags=(-O) ;;
  dev) flags=(--dev) ;;
  *) echo "FUZZ_BUILD: release or dev" >&2; exit 2 ;;
esac
flags+=(-s none --codegen-units 16 --target-dir "$target_dir")
if [ $# -gt 0 ]; then
  targets=("$@")
else
  mapfile -t targets < <(cargo fuzz list)
fi

start=$(date +%s)
cargo fuzz build "${flags[@]}" >/dev/null
echo "fuzz: built ${#targets[@]} targets in $(($(date +%s) - start)) s"

logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
printf '%-12s %12s %8s %8s %8s %8s %s\n' target executions exec/s cov ft corpus crashes
failed=0
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  before=$(find "fuzz/artifacts/$t" -type f | wc -l)
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048
    -max_len=16384)
  [ -n "$runs" ] && args+=(-runs="$runs")
  status=0
  nice -n "${FUZZ_NICE:-10}" cargo fuzz run "${flags[@]}" "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" \
    -- "${args[@]}" >"$logs/$t" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$logs/$t" | grep -o '[0-9]*$' || true)
  speed=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$logs/$t" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+' "$logs/$t" | grep 'cov:' | tail -n 1 || true)
  cov=$(grep -o 'cov: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  ft=$(grep -o 'ft: [0-9]*' <<<"$last" | grep -o '[0-9]*' || true)
  corpus=$(find "fuzz/corpus/$t" -type f | wc -l)
  crashes=$(($(find "fuzz/artifacts/$t" -type f | wc -l) - before))
  printf '%-12s %12s %8s %8s %8s %8s %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" \
    "${ft:-?}" "$corpus" "$crashes"
  if [ "$status" != 0 ] || [ "$crashes" != 0 ]; then
    failed=1
    echo "--- $t exited $status; the end of its log:" >&2
    tail -n 30 "$logs/$t" >&2
  fi
done
exit $failed
