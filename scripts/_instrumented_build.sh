# Sourced by sanitize.sh and valgrind.sh: build connstats with an env knob
# (CONNSTATS_SANITIZE=1, CONNSTATS_DEBUG_BUILD=1) into a fresh venv.
# Expects $root (the checkout) and $PYTHON (the base interpreter).

# copy_sources DEST: the build inputs of the tree without build artefacts, so
# that the in-tree build/ and *.so of a normal build neither leak into nor get
# overwritten by this build.
copy_sources() {
    local dest="$1"
    (
        cd "$root"
        tar --exclude='*.so' --exclude='*.c' --exclude='__pycache__' --exclude='*.html' \
            -cf - setup.py pyproject.toml src connstats \
            $(ls -d README.md LICENSE MANIFEST.in requirements 2>/dev/null)
    ) | tar -C "$dest" -xf -
    [ -f "$dest/README.md" ] || echo "connstats" >"$dest/README.md"
    [ -f "$dest/LICENSE" ] || echo "BSD-3-Clause" >"$dest/LICENSE"
}

# build_venv VENV SRC KNOB=VALUE [PACKAGE...]: recreate VENV with the pinned
# build tools and PACKAGEs, then build SRC in it with KNOB set.  Sets $py.
build_venv() {
    local venv="$1" src="$2" knob="$3"
    shift 3
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    py="$venv/bin/python"
    local constraint=()
    if [ -f "$root/requirements/cython.txt" ]; then
        constraint=(-c "$root/requirements/cython.txt")
    fi
    "$py" -m pip install --quiet --upgrade pip
    "$py" -m pip install --quiet "${constraint[@]}" "setuptools>=77" "Cython>=3.1,<4" wheel "$@"
    echo "$(basename "$0"): building with $knob"
    # No build isolation (the knob's flags must reach this build), which pip
    # refuses together with a build constraint: drop the one .ci/run exports.
    env -u PIP_BUILD_CONSTRAINT "$knob" "$py" -m pip install --quiet --no-build-isolation --no-deps "$src"
}
