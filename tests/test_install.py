"""What a user gets from ``pip install connstats``.

* In a normal install, ``import connstats`` uses the compiled core; checked in
  a subprocess with ``-I -W error`` so neither the source checkout nor a
  swallowed warning (fallback to pure Python, "GIL re-enabled") can hide it.
* On a free-threaded interpreter the import keeps the GIL off.
* A built wheel (``CONNSTATS_TEST_WHEEL=path``) installs into a fresh venv and
  imports from outside the source tree; a built sdist
  (``CONNSTATS_TEST_SDIST=path``) carries the sources and no generated C.
  ``scripts/check_dist.sh`` sets both; without them those tests skip.
* The installed metadata and, in a git checkout, the GitHub workflows.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
NO_EXTENSIONS = os.environ.get("CONNSTATS_NO_EXTENSIONS", "") not in ("", "0")
FREE_THREADED = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
WHEEL = os.environ.get("CONNSTATS_TEST_WHEEL", "")
SDIST = os.environ.get("CONNSTATS_TEST_SDIST", "")

# Runs in the child interpreter; prints what the parent asserts on.
_PROBE = """
import importlib.machinery, importlib.metadata, importlib.util, json, sys
import connstats
from connstats import _impl
core = _impl.core
capture = None
if importlib.util.find_spec("connstats.capture") is not None:
    from connstats.capture import _scan
    capture = {"compiled": _scan.IS_COMPILED, "module": _scan.Scanner.__module__}
print(json.dumps({
    "file": connstats.__file__,
    "compiled": _impl.IS_COMPILED,
    "core": core.__name__,
    "core_file": getattr(core, "__file__", None),
    "version": connstats.__version__,
    "dist_version": importlib.metadata.version("connstats"),
    "ext_suffixes": importlib.machinery.EXTENSION_SUFFIXES,
    "capture": capture,
    "gil_enabled": sys._is_gil_enabled() if hasattr(sys, "_is_gil_enabled") else True,
}))
"""


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CONNSTATS_")}
    env.update(extra)
    return env


def _probe(python: str | Path, cwd: Path, **env: str) -> dict[str, Any]:
    """Import connstats in a fresh isolated interpreter, warnings as errors."""
    proc = subprocess.run(
        [str(python), "-I", "-W", "error", "-c", _PROBE],
        cwd=cwd,
        env=_child_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (
        f"import connstats failed in {python}:\n{proc.stdout}{proc.stderr}"
    )
    result: dict[str, Any] = json.loads(proc.stdout.splitlines()[-1])
    return result


def _assert_compiled(info: dict[str, Any]) -> None:
    assert info["compiled"] is True, info
    assert info["core"] == "connstats._fastparse", info
    assert info["core_file"] is not None, info
    assert any(info["core_file"].endswith(s) for s in info["ext_suffixes"]), info
    if info["capture"] is not None:  # connstats.capture's record scanner
        assert info["capture"]["compiled"] is True, info


def _skip_without_extension(config: pytest.Config) -> None:
    if NO_EXTENSIONS:
        pytest.skip("CONNSTATS_NO_EXTENSIONS is set: pure-Python install")
    if config.getoption("--no-c-extensions", default=False):
        pytest.skip("--no-c-extensions given")


# -- the interpreter running the tests ------------------------------------


def test_default_import_is_compiled(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    _skip_without_extension(request.config)
    info = _probe(sys.executable, cwd=tmp_path)
    _assert_compiled(info)


@pytest.mark.skipif(not FREE_THREADED, reason="needs a free-threaded interpreter")
def test_import_keeps_gil_disabled(tmp_path: Path) -> None:
    # -W error already turns CPython's "The global interpreter lock (GIL) has
    # been enabled to load module ..." RuntimeWarning into an import failure
    # (for connstats._fastparse and connstats.capture._capture); the flag check
    # catches a silent re-enable too.
    env = {"CONNSTATS_NO_EXTENSIONS": "1"} if NO_EXTENSIONS else {}
    info = _probe(sys.executable, cwd=tmp_path, **env)
    assert info["gil_enabled"] is False, info
    if not NO_EXTENSIONS:
        _assert_compiled(info)


def test_installed_metadata() -> None:
    from importlib import metadata

    import connstats

    assert metadata.version("connstats") == connstats.__version__
    meta = metadata.metadata("connstats")
    assert meta["License-Expression"] == "BSD-3-Clause"
    assert meta["Requires-Python"] == ">=3.11"
    scripts = metadata.entry_points(group="console_scripts", name="connstats")
    assert [ep.value for ep in scripts] == ["connstats.cli:main"]


USER_PROGRAM = """\
import array

import connstats

stats = connstats.Statistics()
stats.update_tx_virtual(b"E")
stats.update_rx_virtual(bytearray(20))
stats.update_tx_virtual(memoryview(b"E"))
stats.update_tx_virtual_batch([b"E", array.array("B", [69])])
stats.update_tx_virtual_buffer(b"EE", array.array("I", [0]), [1])
proto, src, dst = connstats.decode(b"E")
virtual, physical = stats.extract()
total: int = sum(counts.tx_bytes for counts in virtual.values())
stats.update_tx_virtual("E")
"""


def test_mypy_strict_sees_the_installed_package(tmp_path: Path) -> None:
    # A user's program, outside the source tree, checked with the
    # interpreter's mypy: it must find the installed connstats (an editable
    # install included: setuptools' import-hook editable installs hide the
    # package from type checkers), its stubs and its buffer types.
    pytest.importorskip("mypy", reason="mypy is not installed")
    prog = tmp_path / "user_program.py"
    prog.write_text(USER_PROGRAM)
    cmd = [
        sys.executable,
        "-m",
        "mypy",
        "--strict",
        "--cache-dir",
        str(tmp_path / "cache"),
    ]
    done = subprocess.run(
        [*cmd, str(prog)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert (
        len(errors) == 1 and 'incompatible type "str"; expected "Buffer"' in errors[0]
    ), done.stdout + done.stderr


# -- a built wheel, in a fresh venv ---------------------------------------


def _venv_python(venv: Path) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _venv_script(venv: Path, name: str) -> Path:
    if sys.platform == "win32":
        return venv / "Scripts" / f"{name}.exe"
    return venv / "bin" / name


@pytest.fixture(scope="module")
def wheel_path() -> Path:
    if not WHEEL:
        pytest.skip("set CONNSTATS_TEST_WHEEL to a built wheel (check_dist.sh does)")
    path = Path(WHEEL).resolve()
    assert path.is_file(), f"CONNSTATS_TEST_WHEEL={WHEEL} does not exist"
    return path


@pytest.fixture(scope="module")
def wheel_venv(wheel_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("wheel-venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    subprocess.run(
        [
            str(_venv_python(venv)),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-index",
            "--no-deps",
            "--only-binary=:all:",
            str(wheel_path),
        ],
        check=True,
        timeout=300,
    )
    return venv


def test_wheel_contents(wheel_path: Path) -> None:
    with zipfile.ZipFile(wheel_path) as wheel:
        names = wheel.namelist()
    top = {n.split("/", 1)[0] for n in names}
    assert top <= {"connstats", "connstats.libs", f"{_dist_info(wheel_path)}"}, top
    assert "connstats/py.typed" in names
    for stub in (ROOT / "connstats").rglob("*.pyi"):
        assert stub.relative_to(ROOT).as_posix() in names
    leaked = [n for n in names if n.endswith((".pyx", ".pxd", ".pxi", ".c", ".html"))]
    assert not leaked, f"build inputs or outputs in the wheel: {leaked}"
    if not wheel_path.name.endswith("-none-any.whl"):
        modules = _extension_modules()
        # every .pyx is built: a new one setup.py does not name would be lost
        assert {stem for _, stem in modules} == {p.stem for p in ROOT.glob("src/*.pyx")}
        for module, _ in modules:
            if module.endswith("._ring") and "linux" not in wheel_path.name:
                continue  # the PACKET_MMAP ring is built on Linux only
            pattern = module.replace(".", "/") + r"\.[^/]*(so|pyd)"
            ext = [n for n in names if re.fullmatch(pattern, n)]
            assert ext, f"no compiled {module} in {wheel_path.name}"


def _extension_modules() -> list[tuple[str, str]]:
    """(module, .pyx stem) of each extension setup.py names; the .pyx files
    sit outside the package, so a module's place is setup.py's to say."""
    text = (ROOT / "setup.py").read_text()
    found = re.findall(
        r'Extension\(\s*"([\w.]+)",\s*sources=\["src/(\w+)\.pyx"\]', text
    )
    assert found, "no Extension(...) found in setup.py"
    return found


def _dist_info(wheel_path: Path) -> str:
    name, version = wheel_path.name.split("-")[:2]
    return f"{name}-{version}.dist-info"


def test_wheel_imports_outside_source_tree(
    wheel_path: Path, wheel_venv: Path, tmp_path: Path
) -> None:
    pure = wheel_path.name.endswith("-none-any.whl")  # built with the opt-out
    env = {"CONNSTATS_NO_EXTENSIONS": "1"} if pure else {}
    info = _probe(_venv_python(wheel_venv), cwd=tmp_path, **env)
    installed = Path(info["file"]).resolve()
    assert wheel_venv.resolve() in installed.parents, info
    assert ROOT not in installed.parents, f"imported the source tree: {info}"
    assert info["version"] == info["dist_version"], info
    if not pure:
        _assert_compiled(info)
        assert wheel_venv.resolve() in Path(info["core_file"]).resolve().parents
    if FREE_THREADED:
        assert info["gil_enabled"] is False, info
    assert _venv_script(wheel_venv, "connstats").is_file()


def test_wheel_pure_python_opt_out(wheel_venv: Path, tmp_path: Path) -> None:
    info = _probe(_venv_python(wheel_venv), cwd=tmp_path, CONNSTATS_NO_EXTENSIONS="1")
    assert info["compiled"] is False, info
    assert info["core"] == "connstats._fastparse_py", info


# -- a built sdist --------------------------------------------------------


def test_sdist_contents() -> None:
    if not SDIST:
        pytest.skip("set CONNSTATS_TEST_SDIST to a built sdist (check_dist.sh does)")
    with tarfile.open(SDIST) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    required = {
        "pyproject.toml",
        "setup.py",
        "MANIFEST.in",
        "LICENSE",
        "README.md",
        "PKG-INFO",
        "requirements/cython.txt",
        "src/_fastparse.pyx",
        "connstats/py.typed",
        "connstats/_version.py",
        "tests/conftest.py",
        "tests/test_install.py",
    }
    for pattern in ("src/**/*.pyx", "src/**/*.pxd", "src/**/*.pxi", "src/**/*.h"):
        required |= {p.relative_to(ROOT).as_posix() for p in ROOT.glob(pattern)}
    required |= {f"connstats/{p.name}" for p in ROOT.glob("connstats/*.pyi")}
    missing = sorted(required - names)
    assert not missing, f"missing from the sdist: {missing}"
    generated = sorted(
        n
        for n in names
        if (n.endswith(".c") and n[:-2] + ".pyx" in names)  # Cython output
        or n.endswith((".html", ".so", ".pyd", ".pyc"))
        or "__pycache__" in n
    )
    assert not generated, f"generated files in the sdist: {generated}"


# -- CI configuration (git checkout only; not shipped in the sdist) -------

WORKFLOWS = ROOT / ".github" / "workflows"


needs_github = pytest.mark.skipif(
    not WORKFLOWS.is_dir(), reason="no .github/ (not a git checkout)"
)


@needs_github
def test_workflows_are_valid_yaml() -> None:
    yaml = pytest.importorskip("yaml")
    files = sorted(WORKFLOWS.glob("*.yml"))
    assert {f.name for f in files} >= {"tests.yml", "wheels.yml", "benchmarks.yml"}
    for path in files:
        doc = yaml.safe_load(path.read_text())
        assert isinstance(doc, dict) and doc.get("jobs"), path.name
        for job_name, job in doc["jobs"].items():
            assert "timeout-minutes" in job, (path.name, job_name)


@needs_github
def test_workflow_actions_are_pinned() -> None:
    pins = (ROOT / "requirements" / "dist.txt").read_text()
    cibw = re.search(r"^cibuildwheel==(\S+)", pins, re.M)
    assert cibw is not None
    for path in sorted(WORKFLOWS.glob("*.yml")):
        for uses in re.findall(r"uses:\s*(\S+)", path.read_text()):
            action, _, ref = uses.partition("@")
            assert ref, f"{path.name}: {uses} is not pinned"
            if action == "pypa/gh-action-pypi-publish":
                assert ref == "release/v1", uses  # the ref PyPA documents
            else:
                assert re.fullmatch(r"v\d+(\.\d+)*", ref), f"{path.name}: {uses}"
            if action == "pypa/cibuildwheel":
                # the action and the local `cibuildwheel` must agree
                assert ref == f"v{cibw.group(1)}", f"{path.name}: {uses} vs {pins}"


def test_source_checkout_shadowing_the_install_is_explained(
    request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    # `pip install .` then Python started in the checkout: the uncompiled
    # tree shadows the install.  The warning must say so, not suggest that
    # the pure-Python core was wanted.
    _skip_without_extension(request.config)
    import shutil

    import connstats

    checkout = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "connstats",
        checkout / "connstats",
        ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"),
    )
    (checkout / "src").mkdir()
    shutil.copy(ROOT / "src" / "_fastparse.pyx", checkout / "src")
    installed = Path(connstats.__file__).resolve().parent
    env = {k: v for k, v in os.environ.items() if k != "CONNSTATS_NO_EXTENSIONS"}
    code = "import connstats; print(connstats.IS_COMPILED)"
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=checkout,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stdout.strip() == "False", done.stderr
    assert (
        f"imported from the source checkout {checkout.resolve() / 'connstats'}"
        in done.stderr
    )
    assert f"instead of the compiled install in {installed}" in done.stderr
    assert "CONNSTATS_NO_EXTENSIONS" not in done.stderr
