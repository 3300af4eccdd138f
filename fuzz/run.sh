#!/usr/bin/env bash
# make fuzz: builds the harnesses, writes the seed corpora, fuzzes each target for SECONDS seconds (one
# target at a time, one process each), and prints executions, coverage and the outcome per target.
#
#   fuzz/run.sh [SECONDS]        (default 60 per target)
#
# New inputs are kept in fuzz/corpus-run/<target>/ (so a later run continues from there), crashes, leaks
# and timeouts are written to fuzz/build/artifacts/<target>/, logs to fuzz/build/<target>.log.
# Exit status 0 only if every target ran its time without a crash, leak, timeout or out-of-memory.
set -euo pipefail
seconds="${1:-60}"
case "$seconds" in
    '' | *[!0-9]*) echo "fuzz: SECONDS must be a whole number of seconds, not '$seconds'" >&2; exit 2 ;;
esac
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
build=fuzz/build

fuzz/build.sh
python3 fuzz/make_corpus.py "$build/seeds"

# Swift's own crash reporter would start swift-backtrace on every trap; libFuzzer reports crashes itself.
export SWIFT_BACKTRACE=enable=no
# The full (slow) unwinder on malloc, so that a leak's stack goes through libnetpbm, which has no frame
# pointers, up to the exported function named in lsan.supp; 8 frames keep that affordable.
export ASAN_OPTIONS="fast_unwind_on_malloc=0:malloc_context_size=8:detect_leaks=1"
export LSAN_OPTIONS="suppressions=$root/fuzz/lsan.supp:print_suppressions=0"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

failures=0
summary=()

# run_target NAME MAX_LEN: fuzzes one target and appends its line to the summary.
run_target() {
    local name="$1" max_len="$2"
    local corpus="fuzz/corpus-run/$name" artifacts="$build/artifacts/$name" log="$build/$name.log"
    mkdir -p "$corpus" "$artifacts"
    echo "fuzz: $name for ${seconds} s (log $log)"
    local rc=0 start elapsed
    start=$(date +%s)
    "$build/fuzz-$name" -max_total_time="$seconds" -timeout=5 -rss_limit_mb=1024 -max_len="$max_len" \
        -dict="fuzz/$name.dict" -print_final_stats=1 -artifact_prefix="$artifacts/" \
        "$corpus" "$build/seeds/$name" > "$log" 2>&1 || rc=$?
    elapsed=$(( $(date +%s) - start ))
    local executions rate last cov ft corp outcome
    executions=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
    last=$(grep -a -E '^#[0-9]+' "$log" | tail -n 1 || true)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<< "$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<< "$last")
    corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9]*[a-zA-Z]*\).*/\1/p' <<< "$last")
    if [ "$rc" -eq 0 ] && grep -a -q 'Done [0-9]* runs' "$log"; then
        outcome="no crash, leak or timeout"
    else
        failures=$((failures + 1))
        local what artifact
        what=$(grep -a -m 1 -o -E 'ERROR: [A-Za-z]+: [^(]*|libFuzzer: (deadly signal|timeout|out-of-memory)[^(]*|Fatal error: .*' "$log" || true)
        artifact=$(grep -a -o -E 'Test unit written to [^ ]*' "$log" | tail -n 1 | sed 's/Test unit written to //' || true)
        outcome="FAILED (exit $rc): ${what:-see the log}${artifact:+; input saved as $artifact}"
    fi
    summary+=("$(printf '%-7s %9s executions in %ss (%s/s), cov %s, ft %s, corpus %s: %s' \
        "$name" "${executions:-?}" "$elapsed" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$outcome")")
}

run_target netpbm 4096
run_target weights 8192

# The committed weights file once through the weights harness: the only input that reaches the
# dequantization after a complete layer table (too large for the fuzzer to make).
weights_file=weights/vgg19-conv-q8.pstw
if [ -f "$weights_file" ]; then
    if "$build/fuzz-weights" "$weights_file" > "$build/weights-file.log" 2>&1; then
        summary+=("weights $weights_file decoded through the instrumented loader: $(grep -a -o 'in [0-9]* ms' "$build/weights-file.log")")
    else
        failures=$((failures + 1))
        summary+=("weights $weights_file: FAILED, see $build/weights-file.log")
    fi
fi

echo
echo "fuzz summary ($(date -u '+%Y-%m-%d %H:%M UTC')):"
printf '  %s\n' "${summary[@]}"
[ "$failures" -eq 0 ]
