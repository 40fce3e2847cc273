"""Every Python example of the documentation runs, and prints what it shows.

The pages (``docs/*.md``, ``README.md``, ``CONTRIBUTING.md``) are Markdown
with fenced code blocks.  A fence whose language is ``pycon`` (or ``python``
holding ``>>>`` prompts) is a doctest; one whose language is ``python`` or
``py`` is a script that must run without error.  All blocks of a page run in
order in one namespace, as a reader would type them, in a temporary
directory.  Anything else (``console``, ``text``, ``sh``, ``go``, a
``{code-block}`` directive, ``{eval-rst}``) is not run: write examples that
need root, a network or a collector that way, or as a script under
``examples/`` that a test runs (as below, and ``tests/test_tun_router.py``).

``pytest --doctest-glob='*.md'`` cannot do this: it would take the closing
fence of a block for expected output.

The pages run in this process on the core in use, and once more in a child
process on the pure-Python core, so what a page prints holds for both.

``console`` blocks whose commands are all ``connstats read ...`` (on the
built-in sample, on ``sample.pcap``/``sample.pcap.gz``, copies of it, or on
the tunnel captures of ``tests/data/tunnels/`` by their names),
optionally piped to ``head -N``, and that show output, are run too and must
print exactly what the page shows.
"""

from __future__ import annotations

import doctest
import gzip
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
RUNNABLE = {"python", "py", "pycon"}
_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")


@dataclass
class Block:
    page: str
    line: int  # 1-based line of the first line of code
    language: str
    code: str


def fenced_blocks(path: Path) -> list[Block]:
    """Every fenced code block of a Markdown file (CommonMark fences)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    i = 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match or (match["fence"][0] == "`" and "`" in match["info"]):
            i += 1
            continue
        indent, fence = len(match["indent"]), match["fence"]
        words = match["info"].split()
        language = words[0] if words else ""
        body: list[str] = []
        i += 1
        first = i + 1  # 1-based line of the first line of code
        while i < len(lines):
            close = _FENCE.match(lines[i])
            if (
                close
                and close["fence"][0] == fence[0]
                and len(close["fence"]) >= len(fence)
                and not close["info"].strip()
            ):
                break
            line = lines[i]
            # a fence indented in a list item: its lines lose that indent
            body.append(line[min(indent, len(line) - len(line.lstrip(" "))) :])
            i += 1
        blocks.append(Block(_name(path), first, language, "\n".join(body) + "\n"))
        i += 1
    return blocks


def _name(path: Path) -> str:
    try:
        return str(path.resolve().relative_to(ROOT))
    except ValueError:
        return str(path)


def runnable_blocks(path: Path) -> list[Block]:
    return [b for b in fenced_blocks(path) if b.language in RUNNABLE]


# Optional packages a page's examples may use, each installed by the [test]
# extra only where it has wheels (duckdb: not on 3.13+ or free-threaded builds).
OPTIONAL_MODULES = ("duckdb", "polars")
_IMPORT = re.compile(r"^\s*(?:>>>\s*)?(?:import|from)\s+(\w+)", re.M)

#: Pages whose run stopped at a block that needs a missing optional module:
#: page -> why (filled by run_page, read by test_page_examples to skip).
STOPPED: dict[str, str] = {}


def _missing_optional(code: str) -> str | None:
    import importlib.util

    for name in _IMPORT.findall(code):
        if name in OPTIONAL_MODULES and importlib.util.find_spec(name) is None:
            return name
    return None


def run_page(path: Path) -> list[str]:
    """Run a page's examples in order; return one report per failure.

    A block that imports an optional package this interpreter does not have
    stops the page there (later blocks build on it), noted in STOPPED."""
    namespace: dict[str, object] = {"__name__": "__main__"}
    failures: list[str] = []
    parser = doctest.DocTestParser()
    for block in runnable_blocks(path):
        missing = _missing_optional(block.code)
        if missing is not None:
            STOPPED[str(path)] = (
                f"{block.page}:{block.line} and later blocks need {missing}, "
                "which is not installed for this Python"
            )
            break
        if block.language == "pycon" or block.code.lstrip().startswith(">>>"):
            test = parser.get_doctest(
                block.code,
                namespace,
                f"{block.page}:{block.line}",
                block.page,
                block.line - 1,
            )
            out: list[str] = []
            runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS, verbose=False)
            result = runner.run(test, out=out.append, clear_globs=False)
            namespace.update(test.globs)
            if result.failed:
                failures.append("".join(out))
                break  # later blocks depend on this one
        else:
            try:
                exec(
                    compile("\n" * (block.line - 1) + block.code, block.page, "exec"),
                    namespace,
                )
            except BaseException as exc:  # reported as the page's failure
                import traceback

                failures.append(
                    f"{block.page}:{block.line}: the python block raised\n"
                    + "".join(traceback.format_exception(exc))
                )
                break
    return failures


def pages() -> list[Path]:
    found = sorted(DOCS.glob("*.md")) + [ROOT / "README.md", ROOT / "CONTRIBUTING.md"]
    return [p for p in found if p.exists() and runnable_blocks(p)]


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_page_examples(
    page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    failures = run_page(page)
    assert not failures, "\n".join(failures)
    if str(page) in STOPPED:
        pytest.skip(STOPPED[str(page)])


def test_page_examples_on_the_pure_python_core(tmp_path: Path) -> None:
    import connstats

    if not connstats.IS_COMPILED:
        pytest.skip(
            "the pages already ran on the pure-Python core (no compiled core here)"
        )
    env = dict(os.environ, CONNSTATS_NO_EXTENSIONS="1")
    result = subprocess.run(
        [sys.executable, "-W", "error", __file__, *map(str, pages())],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr


_READ = re.compile(
    r"^connstats read(?P<args>(?: [^|;&<>`$]*)?)(?: \| head -(?:n ?)?(?P<head>\d+))?$"
)


@dataclass
class Session:
    line: int
    args: list[str]
    head: int | None
    expected: str


def console_sessions(path: Path) -> list[Session]:
    """The ``connstats read`` commands of the page's console blocks that show
    their output, where every command of the block is one."""
    sessions: list[Session] = []
    for block in fenced_blocks(path):
        if block.language != "console":
            continue
        found: list[Session] = []
        runnable = True
        for offset, line in enumerate(block.code.splitlines()):
            if line.startswith("$ "):
                match = _READ.match(line[2:].strip())
                if not match:
                    runnable = False
                    break
                head = int(match["head"]) if match["head"] else None
                found.append(
                    Session(block.line + offset, shlex.split(match["args"]), head, "")
                )
            elif found:
                found[-1].expected += line + "\n"
        if runnable and any(session.expected for session in found):
            sessions += found
    return sessions


def run_session(session: Session, cwd: Path) -> str | None:
    """Run one command; a report if its output is not what the page shows."""
    result = subprocess.run(
        [sys.executable, "-m", "connstats", "read", *session.args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = result.stdout.splitlines()
    if session.head is not None:
        lines = lines[: session.head]
    got = "".join(line.rstrip() + "\n" for line in lines) + result.stderr
    want = "".join(line.rstrip() + "\n" for line in session.expected.splitlines())
    if got.rstrip("\n") == want.rstrip("\n"):
        return None
    return f"line {session.line}: connstats read {shlex.join(session.args)}\n--- page\n{want}--- printed\n{got}"


def console_pages() -> list[Path]:
    found = sorted(DOCS.glob("*.md")) + [ROOT / "README.md"]
    return [p for p in found if p.exists() and console_sessions(p)]


@pytest.mark.parametrize(
    "page", console_pages(), ids=lambda p: str(p.relative_to(ROOT))
)
def test_page_commands(page: Path, tmp_path: Path) -> None:
    from connstats.capture import _libpcap

    sample = ROOT / "connstats" / "data" / "sample.pcap"
    shutil.copy(sample, tmp_path / "sample.pcap")
    # docs/tunnels.md reads tcpdump's tunnel captures by their names
    for capture in (ROOT / "tests" / "data" / "tunnels").glob("*.pcap"):
        shutil.copy(capture, tmp_path / capture.name)
    with open(sample, "rb") as src, gzip.open(tmp_path / "sample.pcap.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    sessions = console_sessions(page)
    if not _libpcap.available():
        print("libpcap is not installed: the --bpf examples are not run")
        sessions = [s for s in sessions if "--bpf" not in s.args]
    failures = [f for f in (run_session(s, tmp_path) for s in sessions) if f]
    assert not failures, "\n".join(failures)


def test_readme_is_a_quick_start() -> None:
    """At most 250 lines, with the two set-up commands CI and users run."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    commands = [b.code for b in fenced_blocks(ROOT / "README.md") if b.language == "sh"]
    assert "python -m pip install . && connstats read\n" in commands
    assert any('python -m pip install -e ".[test]" && pytest\n' in c for c in commands)


def test_fence_parser(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# t\n\n```pycon\n>>> 1 + 1\n2\n```\n\n- item\n\n  ```python\n  x = 3\n  ```\n\n"
        "````markdown\n```python\nnot = run\n```\n````\n\n```console\n$ ls\n```\n",
        encoding="utf-8",
    )
    blocks = fenced_blocks(page)
    assert [(b.language, b.line, b.code) for b in blocks] == [
        ("pycon", 4, ">>> 1 + 1\n2\n"),
        ("python", 11, "x = 3\n"),
        ("markdown", 15, "```python\nnot = run\n```\n"),
        ("console", 21, "$ ls\n"),
    ]
    page.write_text("```pycon\n>>> 1 + 1\n3\n```\n", encoding="utf-8")
    assert run_page(page), "a wrong expected output must fail"
    page.write_text("```python\nraise ValueError('boom')\n```\n", encoding="utf-8")
    assert "boom" in "".join(run_page(page))


def test_loopback_forwarder_example(tmp_path: Path) -> None:
    """examples/loopback_forwarder.py relays 20 datagrams each way; its
    windows add up to exactly those packets and their IP bytes."""
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "loopback_forwarder.py")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    rows = re.findall(
        r"tx (\d+) pkts / (\d+) B, rx (\d+) pkts / (\d+) B", result.stdout
    )
    assert rows, result.stdout
    totals = [sum(int(row[i]) for row in rows) for i in range(4)]
    ip_bytes = sum(20 + 8 + len(f"ping {i}") for i in range(20))
    assert totals == [20, ip_bytes, 20, ip_bytes], result.stdout


if __name__ == "__main__":
    # The child of test_page_examples_on_the_pure_python_core (run in its tmp_path).
    problems = [f for arg in sys.argv[1:] for f in run_page(Path(arg))]
    print("\n".join(problems))
    sys.exit(1 if problems else 0)
