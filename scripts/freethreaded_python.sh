#!/usr/bin/env bash
# A free-threaded (--disable-gil) CPython for the test suite, built once from
# Debian's source packages and cached outside the checkout.
#
#   scripts/freethreaded_python.sh [build]   print the interpreter's path
#                                            (builds it first on a cache miss)
#   scripts/freethreaded_python.sh test [PYTEST ARGS...]
#                                            venv + project + test extras on
#                                            that interpreter, then the README's
#                                            test command with PYTHON_GIL=0;
#                                            fails if the GIL comes back on
#
# Environment:
#   CONNSTATS_FT_CACHE    cache root (default: $XDG_CACHE_HOME/connstats or
#                         ~/.cache/connstats); the build lands in
#                         $CONNSTATS_FT_CACHE/cpython-<version>t
#   CONNSTATS_FT_SERIES   Debian source packages to try, newest first
#                         (default: "python3.14 python3.13")
#   CONNSTATS_FT_VENV     the test venv (default: .venv-ft in the checkout)
#   CONNSTATS_FT_JOBS     make -j (default: nproc)
#
# Why Debian's source packages: the machine may reach only the Debian and PyPI
# mirrors. Bookworm ships neither 3.13 nor 3.14, so a deb-src entry for sid is
# added (a separate file under /etc/apt/sources.list.d, written once). The
# index can list a version whose files the mirror no longer has: every listed
# version is tried, newest first, and the first that downloads is built.
# Debian's patches are not applied: the upstream tarball is built as is.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache_root="${CONNSTATS_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connstats}"
series="${CONNSTATS_FT_SERIES:-python3.14 python3.13}"
jobs="${CONNSTATS_FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { echo "freethreaded_python.sh: $*" >&2; }

# A finished build is a prefix with a .complete stamp (written last), so an
# interrupted build is never mistaken for a good one.
cached_python() {
    local stamp
    for stamp in "$cache_root"/cpython-*t/.complete; do
        [ -f "$stamp" ] || continue
        cat "$stamp"
        return 0
    done
    return 1
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

ensure_deb_src() {
    local f=/etc/apt/sources.list.d/connstats-deb-src-sid.sources
    local first="${series%% *}"
    if [ -z "$(apt-cache showsrc "$first" 2>/dev/null)" ]; then
        if [ ! -f "$f" ]; then
            log "adding a deb-src entry for Debian sid ($f)"
            as_root tee "$f" >/dev/null <<'EOF'
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: sid
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
        fi
        as_root apt-get update -qq >&2
    fi
}

install_build_deps() {
    # ssl (pip over https), ctypes (libffi), zlib/bz2/lzma (wheels, tarballs),
    # sqlite3, readline, uuid, dbm, curses, expat: the stdlib modules the tools
    # and the test suite import.
    local pkgs=(build-essential pkg-config xz-utils libssl-dev libffi-dev zlib1g-dev
        libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libgdbm-dev
        libncurses-dev libexpat1-dev)
    if dpkg -s "${pkgs[@]}" >/dev/null 2>&1; then
        return 0
    fi
    log "installing build dependencies"
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${pkgs[@]}" >&2
}

# fetch_source WORKDIR: download the newest fetchable source package of the
# series into WORKDIR; prints "<package> <upstream version>".
fetch_source() {
    local work="$1" pkg ver
    for pkg in $series; do
        for ver in $(apt-cache showsrc "$pkg" 2>/dev/null | awk '/^Version:/ {print $2}' | sort -rV); do
            log "trying apt-get source $pkg=$ver"
            if (cd "$work" && apt-get source --download-only -qq "$pkg=$ver" >&2 2>&1); then
                echo "$pkg ${ver%-*}"
                return 0
            fi
            rm -f "$work"/*
        done
    done
    log "none of $series could be downloaded from the configured deb-src suites"
    return 1
}

build() {
    local py
    if py="$(cached_python)"; then
        echo "$py"
        return 0
    fi
    mkdir -p "$cache_root"
    # One builder at a time; a second caller waits and then finds the cache.
    exec 9>"$cache_root/.build.lock"
    flock 9
    if py="$(cached_python)"; then
        echo "$py"
        return 0
    fi
    ensure_deb_src
    install_build_deps
    local pkg ver prefix srcdir start
    # global: the EXIT trap runs after this function's locals are gone
    work="$(mktemp -d "${TMPDIR:-/tmp}/connstats-ft-build.XXXXXX")"
    trap 'rm -rf "${work:-}"' EXIT
    read -r pkg ver < <(fetch_source "$work") || true
    [ -n "${ver:-}" ] || exit 1
    prefix="$cache_root/cpython-${ver}t"
    rm -rf "$prefix"
    tar -C "$work" -xf "$work"/*.orig.tar.*z
    srcdir="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'Python-*' | head -n1)"
    [ -n "$srcdir" ] || srcdir="$(find "$work" -mindepth 1 -maxdepth 1 -type d | head -n1)"
    log "building $pkg $ver (--disable-gil) into $prefix"
    start=$SECONDS
    (
        cd "$srcdir"
        # No PGO/LTO and no test run: only the interpreter is needed.
        # No test modules: installing and byte-compiling them is minutes.
        ./configure --quiet --disable-gil --disable-test-modules --prefix="$prefix" >&2
        make -s -j"$jobs" >&2 2>"$work/make.log" || { tail -n 50 "$work/make.log" >&2; exit 1; }
        make -s install >&2 2>>"$work/make.log" || { tail -n 50 "$work/make.log" >&2; exit 1; }
    )
    py="$prefix/bin/python${ver%.*}t"
    [ -x "$py" ] || py="$(ls "$prefix"/bin/python3.*t | head -n1)"
    "$py" - <<'EOF' >&2
import ctypes, ssl, sqlite3, sysconfig, sys, zlib, bz2, lzma
assert sysconfig.get_config_var("Py_GIL_DISABLED"), "not a free-threaded build"
print(sys.version)
EOF
    log "built in $((SECONDS - start)) s"
    echo "$py" >"$prefix/.complete"
    echo "$py"
}

run_tests() {
    local py venv
    py="$(build)"
    venv="${CONNSTATS_FT_VENV:-$root/.venv-ft}"
    cd "$root"
    rm -rf "$venv"
    "$py" -m venv "$venv"
    local vpy="$venv/bin/python"
    export PIP_CONSTRAINT="$root/requirements/cython.txt" PIP_BUILD_CONSTRAINT="$root/requirements/cython.txt"
    "$vpy" -m pip install --quiet --upgrade pip
    # Wheels only for the test dependencies that ship a Rust sdist and no
    # free-threaded wheel (hypothesis's newest release; ast-serialize and
    # librt, which newer mypy needs): pip then picks versions that have one,
    # instead of failing to fetch a Rust toolchain's crates.
    "$vpy" -m pip install --quiet --prefer-binary --only-binary=hypothesis,ast-serialize,librt -e ".[test]"
    export PYTHON_GIL=0
    # Importing an extension not declared free-threading compatible turns the
    # GIL back on with a RuntimeWarning; check it stays off after every
    # connstats extension is loaded.
    "$vpy" - <<'EOF'
import importlib, pkgutil, sys, sysconfig
import connstats
assert sysconfig.get_config_var("Py_GIL_DISABLED"), "not a free-threaded interpreter"
for mod in pkgutil.walk_packages(connstats.__path__, "connstats."):
    try:
        importlib.import_module(mod.name)
    except ImportError as exc:  # platform-specific modules (e.g. Windows capture)
        print(f"  (not importable here: {mod.name}: {exc})")
loaded = sorted(n for n, m in sys.modules.items()
                if n.startswith("connstats") and (getattr(m, "__file__", "") or "").endswith(".so"))
assert loaded, "no compiled connstats extension was imported"
if sys._is_gil_enabled():
    sys.exit(f"the GIL was re-enabled after importing {loaded}")
print(f"GIL stays disabled with {', '.join(loaded)} loaded ({sys.version.split()[0]})")
EOF
    # The README's test command; pyproject.toml turns warnings into errors, so
    # a "GIL has been enabled" RuntimeWarning at any import fails the run. The
    # conftest check below catches a GIL re-enabled by other means.
    "$venv/bin/pytest" -p no:cacheprovider "$@"
    "$vpy" -c 'import sys, connstats; sys.exit("GIL enabled" if sys._is_gil_enabled() else 0)'
}

case "${1:-build}" in
    build) build ;;
    test) shift; run_tests "$@" ;;
    *) echo "usage: $0 [build | test [pytest args...]]" >&2; exit 2 ;;
esac
