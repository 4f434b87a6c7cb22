#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target of the readers (readers/fuzz) with libFuzzer, then keeps
# what it learnt in the repository:
#   - the inputs that reach new code are merged (minimised) into the packed corpus
#     readers/fuzz/corpus/<target>.gz (scripts/fuzz_corpus.py: thousands of inputs, one file);
#   - every crash input is copied to readers/fuzz/crashes/<target>/ and the run fails.
# Both directories are read again by `make test` (readers/tests/corpus.rs), without nightly.
#
#   make fuzz                                      every target, 60 s each, one at a time
#   FUZZ_SECONDS=1800 FUZZ_JOBS=2 make fuzz        30 min each, two targets at a time
#   FUZZ_TARGETS="otlp alerts" make fuzz           some targets
#   FUZZ_CPU_MINUTES=30 FUZZ_JOBS=2 make fuzz      until each target has had 30 CPU-minutes
#
# Needs the nightly toolchain (rustup) and cargo-fuzz, which it installs when missing. Builds
# without sanitizers: the readers hold no `unsafe`, and debug assertions with overflow checks stay
# on, so a panic, an arithmetic overflow, an allocation beyond -malloc_limit_mb or a run beyond
# -timeout is a crash. Prints each target's CPU time (user + system), the figure the README quotes.
set -euo pipefail
cd "$(dirname "$0")/../readers/fuzz"

seconds="${FUZZ_SECONDS:-60}"
jobs="${FUZZ_JOBS:-1}"
all=$(sed -n 's/^name = "\([a-z_]*\)"$/\1/p' Cargo.toml | grep -v '^culprit')
targets="${FUZZ_TARGETS:-$all}"

if ! rustup toolchain list | grep -q '^nightly'; then
  echo "fuzz: installing the nightly toolchain (cargo fuzz needs it)" >&2
  rustup toolchain install nightly --profile minimal
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
  echo "fuzz: installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked
fi

# The bundle and table targets write each input to a scratch directory: in memory where there is one.
if [ -z "${TMPDIR:-}" ] && [ -d /dev/shm ] && [ -w /dev/shm ]; then
  export TMPDIR=/dev/shm
fi

echo "fuzz: building the targets (nightly, no sanitizer)" >&2
cargo +nightly fuzz build --sanitizer none

run_one() {
  local t="$1"
  mkdir -p "work/$t" "corpus" "crashes/$t" "artifacts/$t"
  rm -rf "work/$t.kept"
  ../../scripts/fuzz_corpus.py unpack "corpus/$t.gz" "work/$t.kept"
  local log="work/$t.log" start end
  start=$(date +%s)
  # bash's `time` on the subshell: user and system CPU of libFuzzer and its children. With
  # FUZZ_CPU_MINUTES, runs again (on the corpus so far) until the target has had that much CPU:
  # -max_total_time is wall time, and a busy machine gives a fuzzer less than one core.
  local TIMEFORMAT="%U %S" cpu_s=0 slice="$seconds"
  if [ -n "${FUZZ_CPU_MINUTES:-}" ]; then
    slice=$((FUZZ_CPU_MINUTES * 60))
  fi
  : >"$log"
  while :; do
    local cpu
    cpu=$( { time (cargo +nightly fuzz run --sanitizer none "$t" "work/$t" "seeds/$t" "work/$t.kept" -- \
        -max_total_time="$slice" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 \
        -print_final_stats=1 >>"$log" 2>&1 || true) ; } 2>&1 )
    cpu_s=$(awk -v a="$cpu_s" -v cpu="$cpu" 'BEGIN { split(cpu, c, " "); printf "%.1f", a + c[1] + c[2] }')
    local left
    left=$(awk -v done="$cpu_s" -v want="${FUZZ_CPU_MINUTES:-0}" 'BEGIN { printf "%d", want * 60 - done }')
    if [ "$left" -le 5 ] || ls artifacts/"$t"/crash-* artifacts/"$t"/oom-* artifacts/"$t"/timeout-* >/dev/null 2>&1; then
      break
    fi
    slice="$left"
  done
  end=$(date +%s)
  local found=0
  for c in artifacts/"$t"/crash-* artifacts/"$t"/oom-* artifacts/"$t"/timeout-* artifacts/"$t"/slow-unit-*; do
    [ -e "$c" ] || continue
    case "$c" in */slow-unit-*) continue ;; esac
    mv "$c" "crashes/$t/"
    found=$((found + 1))
  done
  # Keep only inputs that add coverage to the committed corpus.
  cargo +nightly fuzz run --sanitizer none "$t" "work/$t.kept" "work/$t" -- -merge=1 >"work/$t.merge.log" 2>&1 || true
  ../../scripts/fuzz_corpus.py pack "work/$t.kept" "corpus/$t.gz"
  local execs
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | awk '{ n += $1 } END { print n }')
  awk -v t="$t" -v cpu="$cpu_s" -v wall=$((end - start)) -v execs="${execs:-?}" -v found="$found" \
    -v kept="$(ls "work/$t.kept" | wc -l)" 'BEGIN {
      printf "fuzz: %-11s %6.1f CPU-min  %5.1f wall-min  %s runs  %d crash inputs  %d corpus inputs\n",
        t, cpu / 60, wall / 60, execs, found, kept }'
  [ "$found" -eq 0 ]
}

status=0
running=0
for t in $targets; do
  run_one "$t" &
  running=$((running + 1))
  if [ "$running" -ge "$jobs" ]; then
    wait -n || status=1
    running=$((running - 1))
  fi
done
while [ "$running" -gt 0 ]; do
  wait -n || status=1
  running=$((running - 1))
done
if [ "$status" -ne 0 ]; then
  echo "fuzz: crash inputs were found; they are in readers/fuzz/crashes/ (the corpus test now replays them)" >&2
fi
exit "$status"
