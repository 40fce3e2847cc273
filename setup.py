"""Build the Cython core; all metadata lives in pyproject.toml.

Knobs (environment):
  CONNSTATS_NO_EXTENSIONS=1  build/install without the C core (pure Python)
  CONNSTATS_DEBUG_BUILD=1    -O0 -g3, assertions on (MSVC: /Od /Zi)
  CONNSTATS_SANITIZE=1       AddressSanitizer + UndefinedBehaviorSanitizer (gcc/clang)
  CONNSTATS_CYTHON_ANNOTATE=1  write the cython -a HTML report next to the .pyx
"""

import os
import sys

from setuptools import setup


def _flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")


def _extensions():
    if _flag("CONNSTATS_NO_EXTENSIONS"):
        return []
    from Cython.Build import cythonize
    from setuptools import Extension

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
        compile_args += ["-O3", "-DNDEBUG"]
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
    ext = Extension(
        "connstats._fastparse",
        sources=["src/_fastparse.pyx"],
        include_dirs=["src"],
        depends=["src/cs_platform.h", "src/_values.pxi"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
        define_macros=macros,
    )
    return cythonize(
        [ext],
        compiler_directives={"language_level": "3"},
        annotate=_flag("CONNSTATS_CYTHON_ANNOTATE"),
        include_path=["src"],
    )


setup(ext_modules=_extensions())
