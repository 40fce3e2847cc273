#!/usr/bin/env python3
"""Write the connstats(1) manual page, generated from the command's parser.

    python scripts/make_manpage.py > connstats.1 && man ./connstats.1

Everything in it comes from ``connstats.cli.build_parser()`` (descriptions,
options by group, examples), so it says what ``--help`` says.
"""

from __future__ import annotations

import argparse
import os
import re
import sys

from connstats import __version__
from connstats.cli import build_parser

_EXIT_STATUS = [
    ("0", "done"),
    ("1", "an error, printed as one line (connstats: ...)"),
    ("2", "a usage error: a bad option or value"),
    ("3", "connstats capture --fail-on-drop: the kernel dropped packets"),
    ("130", "interrupted by Ctrl-C (connstats read)"),
    ("141", "the reader of the output went away, as a tool killed by SIGPIPE"),
]


def roff(text: str) -> str:
    """Text safe in a roff line: backslashes and hyphens escaped, no line
    starting with a control character."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return re.sub(r"^([.'])", r"\\&\1", text, flags=re.MULTILINE)


def blocks(text: str | None) -> list[str]:
    """Paragraphs and example blocks of a description or epilog, as the help
    formatter (connstats.cli.arguments.HelpFormatter) reads them."""
    out = []
    for block in re.split(r"\n\s*\n", (text or "").strip("\n")):
        if not block.strip():
            continue
        lines = block.splitlines()
        head, rest = lines[0], lines[1:]
        if (head[:1].isspace() or head.endswith(":")) and all(
            line[:1].isspace() for line in rest
        ):
            if not head[:1].isspace():
                out.append(".PP\n" + roff(head))
                lines = rest
            indent = min(
                len(line) - len(line.lstrip()) for line in lines if line.strip()
            )
            body = "\n".join(roff(line[indent:]) for line in lines)
            out.append(".PP\n.RS 4\n.EX\n" + body + "\n.EE\n.RE")
        else:
            out.append(".PP\n" + roff(" ".join(block.split())))
    return out


def invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"\\fI{roff(str(action.metavar or action.dest))}\\fR"
    names = []
    for option in action.option_strings:
        name = f"\\fB{roff(option)}\\fR"
        if action.nargs != 0:
            metavar = action.metavar or (
                "{" + ",".join(map(str, action.choices)) + "}"
                if action.choices
                else action.dest.upper()
            )
            name += f" \\fI{roff(str(metavar))}\\fR"
        names.append(name)
    return ", ".join(names)


def command(parser: argparse.ArgumentParser) -> list[str]:
    out = [f".SS {roff(parser.prog)}"]
    out += blocks(parser.description)
    out.append(".PP\n.EX\n" + roff(parser.format_usage().strip()) + "\n.EE")
    for group in parser._action_groups:  # the groups --help prints, in its order
        actions = [
            a
            for a in group._group_actions
            if a.help != argparse.SUPPRESS
            and not isinstance(a, argparse._SubParsersAction)
        ]
        if not actions:
            continue
        out.append(f".PP\n\\fB{roff(group.title or '')}\\fR")
        out += blocks(group.description)
        for action in actions:
            out.append(
                f".TP\n{invocation(action)}\n{roff(' '.join((action.help or '').split()))}"
            )
    out += blocks(parser.epilog)
    return out


def manpage(parser: argparse.ArgumentParser) -> str:
    subcommands = next(
        a for a in parser._actions if isinstance(a, argparse._SubParsersAction)
    )
    out = [
        # no hyphenation (the man macros restore it at each paragraph unless
        # HY is 0), so option names and values stay whole
        ".nr HY 0",
        f'.TH CONNSTATS 1 "" "connstats {__version__}" "User Commands"',
        ".nh",
        ".ad l",
        ".SH NAME",
        "connstats \\- per\\-connection packet and byte counts from capture files "
        "and live interfaces",
        ".SH SYNOPSIS",
    ]
    for name in subcommands.choices:
        out.append(f".B connstats {name}\n[\\fIOPTIONS\\fR]")
        out.append(".br")
    out.append(".B connstats\n\\-\\-help | \\-\\-version")
    out.append(".SH DESCRIPTION")
    out += blocks(parser.description)
    for choice in subcommands._choices_actions:
        out.append(f".TP\n\\fB{roff(choice.dest)}\\fR\n{roff(choice.help or '')}")
    out.append(".SH OPTIONS")
    for action in parser._actions:
        if action.option_strings:
            out.append(f".TP\n{invocation(action)}\n{roff(action.help or '')}")
    out.append(".SH COMMANDS")
    for sub in subcommands.choices.values():
        out += command(sub)
    out.append(".SH EXIT STATUS")
    for status, meaning in _EXIT_STATUS:
        out.append(f".TP\n{status}\n{roff(meaning)}")
    out.append(".SH SEE ALSO")
    out.append("tcpdump(8), tshark(1), nfcapd(1)")
    return "\n".join(out) + "\n"


if __name__ == "__main__":
    # usage lines wrapped to fit the page's 80 columns after man's indent
    os.environ["COLUMNS"] = "72"
    sys.stdout.write(manpage(build_parser()))
