#!/usr/bin/env bash
# Build the extensions with AddressSanitizer + UndefinedBehaviorSanitizer
# (CONNSTATS_SANITIZE=1, gcc) in a fresh virtualenv, then run the core-focused
# tests and a short fuzz run under them.  Any ASan report or UBSan finding
# aborts the process, so the step fails.
#
#   scripts/sanitize.sh [FUZZ_SECONDS]        # default 10 s per fuzz harness; 0 skips fuzzing
#
# Environment:
#   PYTHON             base interpreter for the venv (default: python3)
#   SANITIZE_VENV      venv to (re)create (default: /tmp/connstats-asan-venv)
#   SANITIZE_TESTS     pytest arguments (default: the core, capture, stress, fork
#                      and exit modules, -m "not slow")
#   SANITIZE_FUZZ      harnesses to fuzz (default: all of fuzz/)
#
# Python itself is not instrumented, so libasan is LD_PRELOADed;
# PYTHONMALLOC=malloc routes Python objects through the sanitizer's allocator
# too.  Leak detection is off: CPython keeps memory until exit by design
# (scripts/valgrind.sh reports leaks from our own code instead).
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
fuzz_seconds="${1:-10}"
PYTHON="${PYTHON:-python3}"
venv="${SANITIZE_VENV:-/tmp/connstats-asan-venv}"
CC="${CC:-gcc}"
export CC

libasan="$("$CC" -print-file-name=libasan.so)"
if [ ! -e "$libasan" ] || [ "$libasan" = "libasan.so" ]; then
    echo "sanitize.sh: $CC has no libasan.so (Debian: apt-get install gcc)" >&2
    exit 2
fi

start=$(date +%s)
# -- 1. a copy of the sources without build artefacts, 2. the sanitized build
# shellcheck source=scripts/_instrumented_build.sh
. "$root/scripts/_instrumented_build.sh"
src="$(mktemp -d "${TMPDIR:-/tmp}/connstats-asan-src.XXXXXX")"
trap 'rm -rf "$src"' EXIT
copy_sources "$src"
echo "sanitize.sh: compiler $("$CC" --version | head -n 1)"
build_venv "$venv" "$src" CONNSTATS_SANITIZE=1 pytest hypothesis numpy "atheris>=2.3"

# -- 3. check that the installed extensions really are the instrumented ones
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/connstats-asan-run.XXXXXX")"  # no connstats/ in cwd
trap 'rm -rf "$src" "$run_dir"' EXIT
mapfile -t sos < <(cd "$run_dir" && "$py" -c "
import importlib
for name in ('connstats._fastparse', 'connstats.capture._capture', 'connstats.capture._ring'):
    try:
        print(importlib.import_module(name).__file__)
    except ImportError:
        pass
" 2>/dev/null || true)
if [ "${#sos[@]}" -eq 0 ]; then
    # importing needs libasan preloaded once the extension is instrumented
    mapfile -t sos < <(find "$venv" -name '_fastparse*.so' -o -name '_capture*.so' -o -name '_ring*.so')
fi
for so in "${sos[@]}"; do
    case "$so" in
        "$venv"/*) ;;
        *) echo "sanitize.sh: $so is not from the sanitizer venv" >&2; exit 1 ;;
    esac
    if ! nm -D "$so" | grep "__asan_report_load" >/dev/null; then  # no -q: SIGPIPE + pipefail
        echo "sanitize.sh: $so is not built with AddressSanitizer" >&2
        exit 1
    fi
    echo "sanitize.sh: instrumented: $so"
done

export LD_PRELOAD="$libasan${LD_PRELOAD:+:$LD_PRELOAD}"
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1:allocator_may_return_null=1:handle_segv=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export PYTHONMALLOC=malloc
export PYTHONFAULTHANDLER=1

# -- 4. the tests
if [ -n "${SANITIZE_TESTS:-}" ]; then
    # shellcheck disable=SC2206
    tests=($SANITIZE_TESTS)
else
    tests=()
    for t in test_decode.py test_decode_hypothesis.py test_core_model.py test_statistics.py \
             test_stress.py test_fork.py test_exit.py test_capture_scan.py test_capture_formats.py \
             test_capture_windows.py test_hostile_callers.py test_ignore_destinations.py \
             test_ring.py test_pcapng_options.py test_shutdown_arguments.py \
             test_tunnels.py test_table_layout.py test_read_fast_path.py test_track_times.py \
             test_preparsed.py test_preparsed_args.py test_max_bytes.py test_textout.py \
             test_lanes.py test_freethreading.py; do
        if [ -f "$root/tests/$t" ]; then
            tests+=("$root/tests/$t")
        fi
    done
    tests+=(-m "not slow")
fi
echo "sanitize.sh: pytest ${tests[*]}"
(
    cd "$run_dir"
    "$py" -m pytest -p no:cacheprovider -q -c "$root/pyproject.toml" --rootdir "$root" \
        -o faulthandler_timeout=600 "${tests[@]}"
)

# -- 5. the fuzz corpora and a short fuzz run on the instrumented build
if [ "$fuzz_seconds" != "0" ]; then
    # The instrumented build is also stricter: a 64-byte-past-the-end read
    # that the guard page of fuzz/_common.py would miss is still reported.
    # shellcheck disable=SC2086
    (cd "$run_dir" && PYTHON="$py" FUZZ_NO_INSTALL=1 "$root/scripts/fuzz.sh" "$fuzz_seconds" ${SANITIZE_FUZZ:-})
fi
echo "sanitize.sh: OK, no sanitizer report ($(( $(date +%s) - start )) s)"
