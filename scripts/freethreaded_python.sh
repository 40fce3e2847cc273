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
# mirrors, and bookworm ships neither 3.13 nor 3.14. The source package comes
# from Debian sid through a private apt configuration (its own sources list,
# package lists and cache, all in the build's temporary directory and removed
# with it): nothing is written under /etc/apt and the machine's package lists
# are not touched. The index can list a version whose files the mirror no
# longer has: every listed version is tried, newest first, and the first that
# downloads is built. Debian's patches are not applied: the upstream tarball
# is built as is.
#
# Build dependencies come from the machine's own suites, and nothing installed
# is upgraded. `apt-get build-dep` is not used: sid's build dependencies are
# not satisfiable on bookworm (python3-setuptools-whl >= 70.1, clang-21 for
# 3.14) and name far more (tk, xvfb, bluetooth, db) than an interpreter for the
# test suite needs. Only the missing packages of an explicit list are
# installed, and only after a simulation shows that the transaction upgrades
# no installed package (naming an installed -dev package in `apt-get install`
# upgrades it and its library, e.g. libssl3 and openssl, to the newest point
# release).
#
# The script checks itself: the installed packages' versions before and after
# its apt steps must agree, and no Debian sid entry may appear under /etc/apt.
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
cache_root="${CONNSTATS_FT_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/connstats}"
series="${CONNSTATS_FT_SERIES:-python3.14 python3.13}"
jobs="${CONNSTATS_FT_JOBS:-$(nproc 2>/dev/null || echo 2)}"

log() { echo "freethreaded_python.sh: $*" >&2; }
die() {
    log "$*"
    exit 1
}

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

# ssl (pip over https), ctypes (libffi), zlib/bz2/lzma (wheels, tarballs),
# sqlite3, readline, uuid, dbm, curses, expat: the stdlib modules the tools
# and the test suite import.
build_deps=(build-essential pkg-config xz-utils libssl-dev libffi-dev zlib1g-dev
    libbz2-dev liblzma-dev libsqlite3-dev libreadline-dev uuid-dev libgdbm-dev
    libncurses-dev libexpat1-dev)

# "package:arch version" of every installed package, sorted (dpkg -l's data).
installed_versions() {
    dpkg-query -W -f='${db:Status-Abbrev} ${Package}:${Architecture} ${Version}\n' |
        awk '$1 ~ /^.i/ {print $2, $3}' | LC_ALL=C sort
}

# Active source lines and deb822 stanzas under /etc/apt that name sid or
# unstable, as "file:line".
sid_entries() {
    grep -HsE '^[[:space:]]*(deb(-src)?[[:space:]].*[[:space:]](sid|unstable)([[:space:]/]|$)|Suites:(.*[[:space:]])?(sid|unstable)([[:space:]]|$))' \
        /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources |
        LC_ALL=C sort || true
}

install_build_deps() {
    local missing=() p upgrades
    for p in "${build_deps[@]}"; do
        dpkg-query -W -f='${db:Status-Abbrev}' "$p" 2>/dev/null | grep -q '^.i' || missing+=("$p")
    done
    [ ${#missing[@]} -eq 0 ] && return 0
    log "installing missing build dependencies from this machine's apt sources: ${missing[*]}"
    as_root apt-get -o DPkg::Lock::Timeout=900 update -qq >&2 ||
        log "apt-get update failed; trying the cached package lists"
    for p in "${missing[@]}"; do
        case "$(apt-cache policy "$p" 2>/dev/null | awk '/Candidate:/ {print $2}')" in
            "" | "(none)")
                die "build dependency $p is not available from this machine's own apt suites (a newer suite such as sid may have it): install it by hand, then run again" ;;
        esac
    done
    # --no-upgrade keeps the named packages as they are; the simulation catches
    # an installed dependency that the transaction would upgrade ("Inst pkg
    # [installed version] (new version ...)").
    local opts=(--no-install-recommends --no-upgrade -o DPkg::Lock::Timeout=900)
    upgrades="$(apt-get -s install "${opts[@]}" "${missing[@]}" 2>/dev/null |
        awk '/^Inst [^ ]+ \[/ {gsub(/[][()]/, ""); printf "%s %s -> %s; ", $2, $3, $4}')"
    if [ -n "$upgrades" ]; then
        die "installing ${missing[*]} would upgrade installed packages (${upgrades%; }): not done; install versions matching the installed ones by hand, then run again"
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${opts[@]}" "${missing[@]}" \
        >"$work/apt-install.log" 2>&1 || {
        tail -n 20 "$work/apt-install.log" >&2
        die "apt-get install ${missing[*]} failed"
    }
}

# fetch_source: download the newest fetchable source package of the series
# into $work/src; prints "<package> <upstream version>". The machine's own
# deb-src entries are used if they know the first of the series, else a
# private apt configuration for Debian sid that lives in $work/apt only.
fetch_source() {
    local pkg ver apt_opts=(-o "APT::Sandbox::User=$(id -un)")
    if [ -z "$(apt-cache showsrc "${series%% *}" 2>/dev/null)" ]; then
        local a="$work/apt"
        mkdir -p "$a/lists/partial" "$a/cache/archives/partial" "$a/sources.list.d"
        echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] http://deb.debian.org/debian sid main" \
            >"$a/sources.list"
        apt_opts+=(-o "Dir::Etc::SourceList=$a/sources.list"
            -o "Dir::Etc::SourceParts=$a/sources.list.d"
            -o "Dir::State::Lists=$a/lists" -o "Dir::Cache=$a/cache"
            -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
        log "reading Debian sid's source index (private apt configuration in $a)"
        apt-get "${apt_opts[@]}" update -qq >&2 ||
            die "apt-get update of the private Debian sid source list failed"
    fi
    mkdir -p "$work/src"
    for pkg in $series; do
        for ver in $(apt-cache "${apt_opts[@]}" showsrc "$pkg" 2>/dev/null |
            awk '/^Version:/ {print $2}' | sort -rV); do
            if (cd "$work/src" &&
                apt-get "${apt_opts[@]}" source --download-only -qq "$pkg=$ver") \
                >"$work/fetch.log" 2>&1; then
                log "downloaded the source package $pkg=$ver"
                echo "$pkg ${ver%-*}"
                return 0
            fi
            # The index may list versions whose files the mirror no longer has.
            log "$pkg=$ver is listed but cannot be downloaded ($(grep -m1 -o '[0-9]\{3\} [A-Za-z ]*' \
                "$work/fetch.log" || tail -n1 "$work/fetch.log")); trying the next"
            rm -f "$work/src"/*
        done
    done
    log "none of $series could be downloaded from the deb-src suites"
    return 1
}

# The apt steps, checked. Prints "<package> <upstream version>".
apt_steps() {
    local before after changed sid_before sid_after added
    local legacy=/etc/apt/sources.list.d/connstats-deb-src-sid.sources
    if [ -f "$legacy" ]; then
        log "removing $legacy (a permanent sid entry written by earlier versions of this script)"
        as_root rm -f "$legacy"
        as_root apt-get -o DPkg::Lock::Timeout=900 update -qq >&2 || true
    fi
    before="$(installed_versions)"
    sid_before="$(sid_entries)"
    install_build_deps
    fetch_source
    after="$(installed_versions)"
    sid_after="$(sid_entries)"
    # Packages installed before whose version differs now (or that are gone);
    # newly installed build dependencies are expected.
    changed="$(LC_ALL=C join -a1 -e '(removed)' -o 0,1.2,2.2 <(echo "$before") <(echo "$after") |
        awk '$2 != $3 {print "  " $1 ": " $2 " -> " $3}')"
    if [ -n "$changed" ]; then
        log "installed packages changed version during the apt steps:"
        echo "$changed" >&2
        exit 1
    fi
    added="$(LC_ALL=C comm -13 <(echo "$sid_before") <(echo "$sid_after"))"
    if [ -n "$added" ]; then
        log "a Debian sid entry appeared under /etc/apt during the apt steps:"
        echo "$added" >&2
        exit 1
    fi
    if [ -n "$sid_after" ]; then
        log "note: /etc/apt has sid entries this script did not write: $sid_after"
    fi
    log "apt steps checked: no installed package changed version, no sid entry added under /etc/apt"
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
    local pkg ver prefix srcdir start buildlog="$cache_root/build.log"
    # global: the EXIT trap runs after this function's locals are gone
    work="$(mktemp -d "${TMPDIR:-/tmp}/connstats-ft-build.XXXXXX")"
    trap 'rm -rf "${work:-}"' EXIT
    # Not in a subshell: the apt steps' failures end the script.
    apt_steps >"$work/fetched"
    read -r pkg ver <"$work/fetched" || true
    [ -n "${ver:-}" ] || exit 1
    prefix="$cache_root/cpython-${ver}t"
    rm -rf "$prefix"
    tar -C "$work" -xf "$work"/src/*.orig.tar.*z
    srcdir="$(find "$work" -mindepth 1 -maxdepth 1 -type d -name 'Python-*' | head -n1)"
    [ -n "$srcdir" ] || die "no Python-* directory in the source package of $pkg $ver"
    log "building $pkg $ver (--disable-gil) into $prefix (output: $buildlog)"
    start=$SECONDS
    # configure, make and make install (~1,750 lines) write to the log only;
    # its tail is shown when a step fails.
    if ! (
        cd "$srcdir"
        # No PGO/LTO and no test run: only the interpreter is needed.
        # No test modules: installing and byte-compiling them is minutes.
        ./configure --disable-gil --disable-test-modules --prefix="$prefix" &&
            make -j"$jobs" &&
            make install
    ) >"$buildlog" 2>&1; then
        tail -n 50 "$buildlog" >&2
        die "building $pkg $ver failed (full output: $buildlog)"
    fi
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
