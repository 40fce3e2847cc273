"""Build the Cython extensions; all metadata lives in pyproject.toml.

Knobs (environment):
  CONNSTATS_NO_EXTENSIONS=1  build/install without the C core (pure Python)
  CONNSTATS_DEBUG_BUILD=1    -O0 -g3, assertions on (MSVC: /Od /Zi)
  CONNSTATS_SANITIZE=1       AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang)
  CONNSTATS_CYTHON_ANNOTATE=1  write the cython -a HTML report next to the .pyx
"""

import glob
import os
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext as _build_ext


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _extensions() -> list[Extension]:
    if _flag("CONNSTATS_NO_EXTENSIONS"):
        return []
    msvc = sys.platform == "win32"
    compile_args: list[str] = []
    link_args: list[str] = []
    macros: list[tuple[str, str | None]] = []
    if msvc:
        if _flag("CONNSTATS_DEBUG_BUILD"):
            compile_args += ["/Od", "/Zi", "/UNDEBUG"]
            link_args += ["/DEBUG"]
        else:
            compile_args += ["/O2", "/DNDEBUG"]
    elif _flag("CONNSTATS_DEBUG_BUILD"):
        compile_args += ["-O0", "-g3", "-UNDEBUG"]
    else:
        # No -march=native: wheels must run on any CPU of the architecture.
        # -g0 drops the debug info Python's own CFLAGS (-g) would add: the
        # wheels are ~8x smaller; CONNSTATS_DEBUG_BUILD=1 keeps it.
        compile_args += ["-O3", "-DNDEBUG", "-g0"]
    if _flag("CONNSTATS_SANITIZE"):
        if msvc:
            raise SystemExit("CONNSTATS_SANITIZE is supported with gcc/clang only")
        san = [
            "-fsanitize=address,undefined",
            "-fno-omit-frame-pointer",
            "-fno-sanitize-recover=undefined",
        ]
        compile_args += san + ["-O1", "-g"]
        link_args += san
    common = {
        "include_dirs": ["src"],
        "extra_compile_args": compile_args,
        "extra_link_args": link_args,
        "define_macros": macros,
    }
    # The .pyx files sit outside the package: name the modules explicitly.
    return [
        # the counting core (decoder + table); portable C, gcc/clang/MSVC
        Extension(
            "connstats._fastparse",
            sources=["src/_fastparse.pyx"],
            # the per-concern files _fastparse.pyx includes
            depends=["src/cs_platform.h", "src/cs_lanes.h", *sorted(glob.glob("src/core/*.pxi"))],
            **common,
        ),
        # the pcap/pcapng record scanner of connstats.capture (it shares the
        # core's tunnel decapsulation)
        Extension(
            "connstats.capture._capture",
            sources=["src/_capture.pyx"],
            depends=["src/core/decap.pxi"],
            **common,
        ),
        # IPFIX record packing for connstats.export (pure-Python twin there)
        Extension(
            "connstats.export._ipfix_encode", sources=["src/_ipfix_encode.pyx"], **common
        ),
    ] + _linux_only(common)


def _linux_only(common: dict) -> list[Extension]:
    # The PACKET_MMAP ring of `connstats capture` exists on Linux only;
    # elsewhere live capture says it needs Linux (connstats/capture/_live.py).
    if not sys.platform.startswith("linux"):
        return []
    return [
        Extension(
            "connstats.capture._ring",
            sources=["src/_ring.pyx"],
            depends=["src/cs_ring.h"],
            **common,
        )
    ]


# Commands that finalize build_ext only to list sources (no compiling).
_SOURCE_LIST_ONLY = {"sdist", "egg_info", "dist_info"}


class build_ext(_build_ext):
    """Cythonize when building the extension, not for sdist/egg_info.

    The sdist then lists the .pyx (not a generated .c), and the generated C
    goes to build/cython/ instead of src/, unless the annotate report is asked
    for (it is written next to the .pyx).
    """

    def finalize_options(self) -> None:
        if set(self.distribution.commands) <= _SOURCE_LIST_ONLY:
            # Only the source list is wanted: ship the .pyx as it is.
            super().finalize_options()
            return
        from Cython.Build import cythonize

        annotate = _flag("CONNSTATS_CYTHON_ANNOTATE")
        self.distribution.ext_modules = cythonize(
            self.distribution.ext_modules,
            compiler_directives={"language_level": "3"},
            annotate=annotate,
            include_path=["src"],
            build_dir=None if annotate else "build/cython",
        )
        super().finalize_options()


setup(ext_modules=_extensions(), cmdclass={"build_ext": build_ext})
