"""The command's help, manual page and shell completion, all from one parser.

``--help`` fits an 80-column terminal (and a narrower one) without breaking
option names or values; ``scripts/make_manpage.py`` writes a manual page that
lists every option and that groff renders without a warning; argcomplete
completes options, choices and interface names.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from connstats.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def _parsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    commands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    return {"": parser, **commands.choices}


def _help(capsys: pytest.CaptureFixture[str], argv: list[str]) -> str:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 0
    return capsys.readouterr().out


def _words(parser: argparse.ArgumentParser) -> set[str]:
    """Option names and the hyphenated words of the help texts (options whose
    help is suppressed, kept only for old command lines, are not shown)."""
    words = set()
    for action in parser._actions:
        if action.help == argparse.SUPPRESS:
            continue
        words.update(action.option_strings)
        words.update(re.findall(r"[\w.]+(?:-[\w.]+)+", action.help or ""))
    return words


@pytest.mark.parametrize("columns", [80, 60])
@pytest.mark.parametrize("command", ["", "read", "capture"])
def test_help_fits_the_terminal(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    command: str,
    columns: int,
) -> None:
    monkeypatch.setenv("COLUMNS", str(columns))
    out = _help(capsys, [command, "--help"] if command else ["--help"])
    # the examples of the epilogs are as written (the longest is 74 columns)
    too_long = [line for line in out.splitlines() if len(line) > max(columns, 76)]
    assert too_long == []
    if columns == 80:
        assert [line for line in out.splitlines() if len(line) > 80] == []
    # an option or a value such as tx-bytes is never cut at its hyphen
    flat = " ".join(out.split())
    for word in _words(_parsers()[command]):
        assert word in flat, word


def test_help_paragraphs_are_filled_and_examples_kept(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    out = _help(capsys, ["read", "--help"])
    assert (
        "\n  connstats read trace.pcapng --top 5     the five biggest connections\n"
        in out
    )
    # the selection group's description is filled like the rest
    assert "\nselection:\n  --host, --net, --port and --proto select connections" in out


def test_manpage_lists_every_option_and_renders(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_manpage.py")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    page = result.stdout
    assert page.startswith(".nr HY 0\n.TH CONNSTATS 1")
    for name, parser in _parsers().items():
        if name:
            assert f".SS connstats {name}" in page
        for action in parser._actions:
            if action.help == argparse.SUPPRESS:
                continue
            for option in action.option_strings:
                assert "\\fB" + option.replace("-", "\\-") + "\\fR" in page, option
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip(
            "groff is not installed (apt install groff-base): page not rendered"
        )
    (tmp_path / "connstats.1").write_text(page, encoding="utf-8")
    rendered = subprocess.run(
        [groff, "-man", "-Tutf8", "-ww", "-rLL=80n", str(tmp_path / "connstats.1")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert rendered.returncode == 0 and rendered.stderr == "", rendered.stderr
    text = re.sub(r".\x08", "", rendered.stdout)
    assert "--max-period SECONDS" in text
    assert "connstats read trace.pcapng --top 5" in text


def _complete(line: str, tmp_path: Path) -> list[str]:
    out = tmp_path / "completions"
    env = dict(
        os.environ,
        _ARGCOMPLETE="1",
        _ARGCOMPLETE_IFS="\n",
        COMP_LINE=line,
        COMP_POINT=str(len(line)),
        _ARGCOMPLETE_STDOUT_FILENAME=str(out),
    )
    result = subprocess.run(
        [sys.executable, "-m", "connstats"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return [word.strip() for word in out.read_text().split("\n")]


@pytest.mark.skipif(sys.platform == "win32", reason="bash/zsh completion")
def test_shell_completion(tmp_path: Path) -> None:
    pytest.importorskip("argcomplete", reason="the completion extra is not installed")
    assert set(_complete("connstats ", tmp_path)) >= {"read", "capture"}
    assert "--format" in _complete("connstats read --fo", tmp_path)
    assert set(_complete("connstats read --format ", tmp_path)) == {
        "table",
        "jsonl",
        "csv",
        "parquet",
    }
    assert "--ring-size" in _complete("connstats capture --ri", tmp_path)
    interfaces = _complete("connstats capture -i ", tmp_path)
    assert "any" in interfaces
    if os.path.isdir("/sys/class/net"):
        assert set(os.listdir("/sys/class/net")) <= set(interfaces)


def test_no_completion_without_the_request(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """An ordinary run ignores completion (and does not import argcomplete)."""
    monkeypatch.delenv("_ARGCOMPLETE", raising=False)
    sys.modules.pop("argcomplete", None)
    _help(capsys, ["--help"])
    assert "argcomplete" not in sys.modules


def test_terminal_columns_as_shutil_finds_them(monkeypatch: pytest.MonkeyPatch) -> None:
    # The help formatter measures the terminal itself (argparse would import
    # shutil on every run for it); it must find what shutil finds.
    import shutil

    from connstats.cli.arguments import terminal_columns

    for value in ("50", "0", "-3", "wide", ""):
        monkeypatch.setenv("COLUMNS", value)
        assert terminal_columns() == shutil.get_terminal_size().columns, value
    monkeypatch.delenv("COLUMNS")
    assert terminal_columns() == shutil.get_terminal_size().columns
    monkeypatch.setattr(sys, "__stdout__", None)  # no standard output at all
    assert terminal_columns() == 80 == shutil.get_terminal_size().columns
