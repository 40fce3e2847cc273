#!/usr/bin/env bash
# valgrind memcheck over the compiled extensions.
#
#   scripts/valgrind.sh [PYTEST_ARGS...]
#
# Builds the extensions with CONNSTATS_DEBUG_BUILD=1 (-O0 -g3) in a fresh
# virtualenv, then runs under memcheck (PYTHONMALLOC=malloc, so Python objects
# are tracked too):
#   1. tests/isolated/valgrind_workload.py: every entry point of the core, the
#      fuzz corpora, Statistics with dump threads, bad arguments;
#   2. a focused test module (default: tests/test_decode.py; pass other
#      pytest arguments to change it).
# It fails only on errors whose stack involves connstats code (the
# _fastparse/_capture extensions or their sources): invalid reads/writes, uses
# of uninitialised values, bad frees, and "definitely lost" leaks.  CPython's
# own noise is ignored.
#
# Environment:
#   PYTHON           base interpreter for the venv (default: python3)
#   VALGRIND_VENV    venv to (re)create (default: /tmp/connstats-valgrind-venv)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
venv="${VALGRIND_VENV:-/tmp/connstats-valgrind-venv}"
start=$(date +%s)

if ! command -v valgrind >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        echo "valgrind.sh: installing valgrind"
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq valgrind >/dev/null
    else
        echo "valgrind.sh: valgrind is not installed (Debian: apt-get install valgrind)" >&2
        exit 2
    fi
fi

# -- the debug build, from a copy of the sources without build artefacts
# shellcheck source=scripts/_instrumented_build.sh
. "$root/scripts/_instrumented_build.sh"
src="$(mktemp -d "${TMPDIR:-/tmp}/connstats-vg-src.XXXXXX")"
run_dir="$(mktemp -d "${TMPDIR:-/tmp}/connstats-vg-run.XXXXXX")"
trap 'rm -rf "$src" "$run_dir"' EXIT
copy_sources "$src"
build_venv "$venv" "$src" CONNSTATS_DEBUG_BUILD=1 pytest hypothesis
(cd "$run_dir" && "$py" -c "import connstats._fastparse as m; print('valgrind.sh: extension', m.__file__)")

export PYTHONMALLOC=malloc
vg=(valgrind --tool=memcheck --error-exitcode=0 --num-callers=40 --track-origins=yes
    --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite
    --child-silent-after-fork=yes --xml=yes)

status=0
run() {  # run NAME COMMAND...: a failure is reported after the memcheck summary
    local name="$1"
    shift
    local xml="$run_dir/$name.%p.xml"
    echo "valgrind.sh: [$name] $*"
    local t0 rc=0
    t0=$(date +%s)
    (cd "$run_dir" && "${vg[@]}" --xml-file="$xml" "$@") || rc=$?
    echo "valgrind.sh: [$name] exit status $rc after $(( $(date +%s) - t0 )) s"
    if [ "$rc" -ne 0 ]; then
        status=1
    fi
}

run workload "$py" "$root/tests/isolated/valgrind_workload.py"
if [ "$#" -gt 0 ]; then
    tests=("$@")
else
    tests=("$root/tests/test_decode.py")
fi
run pytest "$py" -m pytest -p no:cacheprovider -q -c "$root/pyproject.toml" --rootdir "$root" \
    -o faulthandler_timeout=0 "${tests[@]}"

# -- keep only the errors whose stack touches connstats code
"$py" - "$run_dir" "$root" <<'PYEOF' || status=1
import glob
import os
import sys
import xml.etree.ElementTree as ET

run_dir, root = sys.argv[1], sys.argv[2]
OURS = ("_fastparse", "_capture", "cs_platform.h", ".pxi")


def ours(frame) -> bool:
    text = " ".join((frame.findtext(tag) or "") for tag in ("obj", "fn", "file", "dir"))
    return any(mark in text for mark in OURS)


def describe(error) -> str:
    kind = error.findtext("kind")
    what = error.findtext("what") or error.findtext("xwhat/text") or ""
    lines = [f"{kind}: {what}"]
    for stack in error.findall("stack"):
        for frame in stack.findall("frame")[:15]:
            fn = frame.findtext("fn") or "?"
            where = frame.findtext("file")
            line = frame.findtext("line")
            obj = os.path.basename(frame.findtext("obj") or "")
            lines.append(f"    {fn} ({where}:{line})" if where else f"    {fn} [{obj}]")
        lines.append("  --")
    return "\n".join(lines)


files = sorted(glob.glob(os.path.join(run_dir, "*.xml")))
total = mine = 0
reports = []
for path in files:
    try:
        tree = ET.parse(path)
    except ET.ParseError as exc:  # a run killed mid-write
        sys.exit(f"valgrind.sh: cannot parse {path}: {exc}")
    for error in tree.getroot().iter("error"):
        total += 1
        if any(ours(f) for f in error.iter("frame")):
            mine += 1
            reports.append(describe(error))
print(f"valgrind.sh: {len(files)} processes, {total} memcheck errors in all, {mine} involving connstats code")
for report in reports[:20]:
    print(report)
sys.exit(1 if mine else 0)
PYEOF
if [ "$status" -ne 0 ]; then
    echo "valgrind.sh: FAILED ($(( $(date +%s) - start )) s)" >&2
    exit 1
fi
echo "valgrind.sh: OK ($(( $(date +%s) - start )) s)"
