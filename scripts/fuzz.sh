#!/usr/bin/env bash
# Bounded fuzzing run of every harness in fuzz/ (see fuzz/README.md).
#
#   scripts/fuzz.sh [SECONDS] [HARNESS...]      # default: 60 s each; decode core capture compress
#
# Each harness first replays its checked-in seeds and regression inputs
# (fuzz/corpus/NAME, fuzz/regressions/NAME), then runs under atheris for
# SECONDS with a scratch copy of the corpus (the checked-in one never grows),
# and the script prints the executions per harness.  Exits non-zero if any
# harness finds something; the crashing input is kept and its path printed.
#
# Environment:
#   PYTHON          interpreter with connstats installed (default: python3)
#   FUZZ_WORKDIR    where scratch corpora, logs and crash inputs go (default: mktemp -d)
#   FUZZ_ARGS       extra libFuzzer flags, e.g. "-max_len=4096 -jobs=2"
#   FUZZ_NO_INSTALL=1  do not pip-install atheris when it is missing
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds="${1:-60}"
shift || true
harnesses=("$@")
if [ "${#harnesses[@]}" -eq 0 ]; then
    harnesses=(decode core capture compress)
fi
PYTHON="${PYTHON:-python3}"
case "$seconds" in
    ''|*[!0-9]*) echo "fuzz.sh: SECONDS must be a whole number, got '$seconds'" >&2; exit 2 ;;
esac

if ! "$PYTHON" -c "import atheris" 2>/dev/null; then
    if [ "${FUZZ_NO_INSTALL:-0}" != "0" ]; then
        echo "fuzz.sh: atheris is not installed for $PYTHON" >&2
        exit 2
    fi
    echo "fuzz.sh: installing atheris for $PYTHON"
    "$PYTHON" -m pip install --quiet "atheris>=2.3"
fi

work="${FUZZ_WORKDIR:-$(mktemp -d "${TMPDIR:-/tmp}/connstats-fuzz.XXXXXX")}"
mkdir -p "$work"
echo "fuzz.sh: ${seconds} s per harness, work dir $work"

stat_of() {  # stat_of LOG NAME -> value of libFuzzer's final stat::NAME
    sed -n "s/^stat::$2:[[:space:]]*\([0-9]*\).*/\1/p" "$1" | tail -n 1
}

summary=()
failed=0
for name in "${harnesses[@]}"; do
    script="$root/fuzz/fuzz_$name.py"
    if [ ! -f "$script" ]; then
        echo "fuzz.sh: no harness $script" >&2
        exit 2
    fi
    dir="$work/$name"
    mkdir -p "$dir/corpus" "$dir/crashes"
    log="$dir/log"

    # 1. the checked-in seeds and regression inputs, deterministically
    inputs=("$root/fuzz/corpus/$name")
    if [ -d "$root/fuzz/regressions/$name" ]; then
        inputs+=("$root/fuzz/regressions/$name")
    fi
    if ! "$PYTHON" "$script" --replay "${inputs[@]}" >"$dir/replay.log" 2>&1; then
        echo "fuzz_$name: FAILED on a checked-in input:" >&2
        tail -n 25 "$dir/replay.log" >&2
        summary+=("fuzz_$name: FAILED replaying checked-in inputs (see $dir/replay.log)")
        failed=1
        continue
    fi
    if grep -q "SKIPPED" "$dir/replay.log"; then
        summary+=("$(grep -m1 SKIPPED "$dir/replay.log")")
        continue
    fi

    # 2. a bounded atheris run
    extra=()
    if [ -f "$root/fuzz/$name.dict" ]; then
        extra+=("-dict=$root/fuzz/$name.dict")
    fi
    # shellcheck disable=SC2206
    extra+=(${FUZZ_ARGS:-})
    start=$(date +%s)
    set +e
    "$PYTHON" "$script" \
        -max_total_time="$seconds" -timeout=20 -rss_limit_mb=3072 -print_final_stats=1 \
        -artifact_prefix="$dir/crashes/" "${extra[@]}" \
        "$dir/corpus" "$root/fuzz/corpus/$name" >"$log" 2>&1
    rc=$?
    set -e
    elapsed=$(( $(date +%s) - start ))
    execs="$(stat_of "$log" number_of_executed_units)"
    rate="$(stat_of "$log" average_exec_per_sec)"
    new="$(stat_of "$log" new_units_added)"
    rss="$(stat_of "$log" peak_rss_mb)"
    if [ "$rc" -ne 0 ]; then
        failed=1
        echo "fuzz_$name: FINDING (exit $rc); last lines of $log:" >&2
        grep -v '^#\|^"\|^INFO\|^WARNING' "$log" | tail -n 40 >&2 || true
        for crash in "$dir"/crashes/*; do
            [ -e "$crash" ] && echo "fuzz_$name: input kept at $crash" >&2
        done
        summary+=("fuzz_$name: FAILED after ${execs:-?} executions in ${elapsed} s (input in $dir/crashes/)")
    elif grep -q "SKIPPED" "$log"; then
        summary+=("$(grep -m1 SKIPPED "$log")")
    else
        summary+=("fuzz_$name: ${execs:-?} executions in ${elapsed} s (${rate:-?}/s), ${new:-?} new corpus units, peak RSS ${rss:-?} MB, no finding")
    fi
done

echo "fuzz.sh summary:"
for line in "${summary[@]}"; do
    echo "  $line"
done
exit "$failed"
