#!/usr/bin/env bash
# find_python.sh X.Y: print the path of a working python X.Y, or fail.
#
# python3.12 on PATH can be a pyenv shim that only works when that version is
# selected ("pyenv: python3.12: command not found"): then the newest installed
# pyenv version X.Y.* is used directly.
set -euo pipefail
version="$1"
if command -v "python$version" >/dev/null 2>&1 &&
    exe="$("python$version" -c 'import sys; print(sys.executable)' 2>/dev/null)"; then
    echo "$exe"
    exit 0
fi
if command -v pyenv >/dev/null 2>&1; then
    for v in $(pyenv versions --bare 2>/dev/null | grep -E "^${version//./\\.}\.[0-9]+$" | sort -rV); do
        exe="$(pyenv root)/versions/$v/bin/python$version"
        if [ -x "$exe" ] && "$exe" -c 'import sys' >/dev/null 2>&1; then
            echo "$exe"
            exit 0
        fi
    done
fi
exit 1
