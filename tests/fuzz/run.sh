#!/usr/bin/env bash
# `make fuzz`: a short coverage-guided run of every fuzz target in tests/fuzz/ (issue 7). Not
# part of `make test` or CI.
#
#   FUZZ_SECONDS=60      seconds per target (libFuzzer -max_total_time)
#   FUZZ_TARGETS="a b"   a subset of the targets (default: all, in the order below)
#   FUZZ_COVERAGE=1      afterwards, line coverage of src/ per target over its corpus
#                        (cargo fuzz coverage; needs rustup's llvm-tools for nightly)
#
# Targets run one after the other, each in one libFuzzer process (one core). A crash does not
# stop the others; the run fails at the end, naming the crashing targets and their inputs
# (tests/fuzz/artifacts/<target>/), which belong in a regression test. Corpora grow in
# tests/fuzz/corpus/<target>/ (not in git) and are seeded from tests/golden/ first.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT"
FUZZ=tests/fuzz
SECONDS_EACH=${FUZZ_SECONDS:-60}
ALL="sse_reader sse_relay chat_request responses_request chat_stream responses_stream cloak_body"
TARGETS=${FUZZ_TARGETS:-$ALL}
LOGS=$FUZZ/target/logs

say() { echo "fuzz: $*"; }
die() { echo "fuzz: ERROR: $*" >&2; exit 1; }

rustup toolchain list 2>/dev/null | grep -q '^nightly' \
  || die "cargo fuzz needs a nightly toolchain: rustup toolchain install nightly"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi
command -v python3 >/dev/null 2>&1 || die "python3 is needed to seed the corpora"

python3 $FUZZ/seed.py
cargo +nightly fuzz build --fuzz-dir $FUZZ
mkdir -p "$LOGS"

dict_of() {
  case $1 in
    chat_request) echo "$ROOT/$FUZZ/dict/chat_request.dict" ;;
    responses_request) echo "$ROOT/$FUZZ/dict/responses_request.dict" ;;
    *) echo "$ROOT/$FUZZ/dict/stream.dict" ;;
  esac
}

# The source files each target exercises, for the coverage report.
files_of() {
  case $1 in
    sse_reader) echo src/anthropic/sse.rs src/anthropic/event.rs ;;
    sse_relay) echo src/anthropic/sse.rs src/routes/relay.rs ;;
    chat_request) echo src/openai/chat/*.rs src/openai/params.rs src/openai/draft.rs src/openai/reasoning.rs src/openai/content.rs ;;
    responses_request) echo src/openai/responses/*.rs src/openai/draft.rs src/openai/reasoning.rs src/openai/content.rs ;;
    chat_stream) echo src/openai/chat/response.rs src/openai/answer.rs src/anthropic/collector.rs ;;
    responses_stream) echo src/openai/responses/stream.rs src/openai/responses/object.rs src/openai/answer.rs ;;
    cloak_body) echo src/backends/oauth/cloak.rs src/base/jsonspan.rs ;;
  esac
}

crashed=()
summary=()
for t in $TARGETS; do
  say "$t: ${SECONDS_EACH}s"
  log=$LOGS/$t.log
  mkdir -p "$FUZZ/corpus/$t" "$FUZZ/artifacts/$t"
  # -timeout: one input running 10 s counts as a hang (an endless loop is a bug too).
  if cargo +nightly fuzz run --fuzz-dir $FUZZ "$t" "$FUZZ/corpus/$t" -- \
      -max_total_time="$SECONDS_EACH" -timeout=10 -dict="$(dict_of "$t")" \
      -print_final_stats=1 >"$log" 2>&1; then
    status=ok
  else
    status=CRASH
    crashed+=("$t")
    grep -E 'panicked at|ERROR: libFuzzer|SUMMARY|Failing input|Test unit written' "$log" \
      | head -8 | sed "s/^/  $t: /" >&2 || true
  fi
  # The last status line: "#N DONE cov: C ft: F corp: U/S lim: L exec/s: E rss: R".
  line=$(grep -E '^#[0-9]+' "$log" | tail -1 || true)
  field() { echo "$line" | grep -oE "$1 [^ ]+" | head -1 | cut -d' ' -f2; }
  execs=$(echo "$line" | grep -oE '^#[0-9]+' | tr -d '#')
  summary+=("$(printf '%-18s %-6s %10s %8s %6s %7s %12s' "$t" "$status" "${execs:-?}" \
    "$(field exec/s:)" "$(field cov:)" "$(field ft:)" "$(field corp:)")")
done

echo
printf '%-18s %-6s %10s %8s %6s %7s %12s\n' target status execs exec/s cov ft corpus
printf '%s\n' "${summary[@]}"
echo "(cov/ft: libFuzzer's covered edges and features; corpus: inputs/bytes; logs in $LOGS)"

if [ "${FUZZ_COVERAGE:-}" = 1 ]; then
  echo
  sysroot=$(rustc +nightly --print sysroot)
  host=$(rustc +nightly -vV | sed -n 's/^host: //p')
  cov=$sysroot/lib/rustlib/$host/bin/llvm-cov
  [ -x "$cov" ] || die "coverage needs llvm-tools: rustup component add llvm-tools --toolchain nightly"
  for t in $TARGETS; do
    cargo +nightly fuzz coverage --fuzz-dir $FUZZ "$t" "$FUZZ/corpus/$t" >"$LOGS/$t.coverage.log" 2>&1 \
      || die "cargo fuzz coverage $t failed (see $LOGS/$t.coverage.log)"
    # cargo fuzz puts the coverage build under the enclosing target directory: the root's.
    bin=
    for d in "$FUZZ/target" target; do
      [ -x "$d/$host/coverage/$host/release/$t" ] && bin=$d/$host/coverage/$host/release/$t && break
    done
    [ -n "$bin" ] || die "no coverage binary for $t (see $LOGS/$t.coverage.log)"
    # Line coverage of the source files the target is about (the rest of the crate is not
    # reachable from it): "FILE regions missed cover% functions missed exec% lines missed cover% …".
    "$cov" report "$bin" -instr-profile="$FUZZ/coverage/$t/coverage.profdata" $(files_of "$t") \
      | awk -v t="$t" 'NF >= 10 && $1 != "Filename" && $1 != "TOTAL" && $1 !~ /^-/ {
          printf "%-18s %-26s lines %5d of %5d  %s\n", t, $1, $8-$9, $8, $10}'
  done
fi

if [ ${#crashed[@]} -gt 0 ]; then
  die "crashes in: ${crashed[*]} (inputs in $FUZZ/artifacts/<target>/; reproduce with cargo +nightly fuzz run --fuzz-dir $FUZZ <target> <input>)"
fi
say "no crash"
