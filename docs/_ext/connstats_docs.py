"""Sphinx extension of the connstats docs: stub signatures, the command-line
reference and repository links.

* The compiled core (``connstats._fastparse``, a Cython module) carries
  docstrings but no introspectable signatures; its stubs (``*.pyi`` next to
  it) have the exact, typed ones.  Every object autodoc documents whose
  ``module.qualname`` has a stub gets the stub's signature, so the API
  reference is generated from the docstrings and the stubs together.
* ``cli-reference MODULE:FUNCTION`` renders the argparse parser that
  FUNCTION returns (``connstats.cli.main:build_parser``): one section per
  command with its description, usage, options by group and epilog, in the
  words ``--help`` prints, so the page cannot drift from the command.
* Links written ``[text](gh:PATH)`` point at a file of the repository
  (``conf.myst_url_schemes``); a PATH that does not exist in the checkout is
  a warning, which ``sphinx-build -W`` turns into a failed build.
"""

from __future__ import annotations

import argparse
import ast
import importlib
import os
import re
from pathlib import Path
from typing import Any

from docutils import nodes
from sphinx.application import Sphinx
from sphinx.util import logging
from sphinx.util.docutils import SphinxDirective

logger = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parents[2]


class _Aliases(ast.NodeTransformer):
    """Replace a stub's private aliases (``_Address``) by what they stand for."""

    def __init__(self, aliases: dict[str, ast.expr]) -> None:
        self.aliases = aliases

    def visit_Name(self, node: ast.Name) -> Any:
        value = self.aliases.get(node.id)
        return self.visit(value) if value is not None else node


def _stub_signatures(package: str) -> dict[str, tuple[str, str | None]]:
    """``"module.Qual.name" -> ("(args)", "return annotation")`` for every
    function and method in the package's stubs; a class maps to its
    ``__init__`` without ``self``."""
    base = Path(importlib.import_module(package).__file__ or "").parent
    table: dict[str, tuple[str, str | None]] = {}
    for stub in sorted(base.rglob("*.pyi")):
        rel = stub.relative_to(base.parent).with_suffix("")
        module = ".".join(rel.parts)
        tree = ast.parse(stub.read_text(encoding="utf-8"))
        aliases = {
            node.targets[0].id: node.value
            for node in tree.body
            if isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id.startswith("_")
        }
        expand = _Aliases(aliases)

        def add(
            qualname: str,
            func: ast.FunctionDef,
            drop_self: bool,
            module: str = module,
            expand: _Aliases = expand,
        ) -> None:
            func = expand.visit(ast.fix_missing_locations(func))
            args = func.args
            if drop_self and args.posonlyargs:
                args.posonlyargs = args.posonlyargs[1:]
            elif drop_self and args.args:
                args.args = args.args[1:]
            returns = ast.unparse(func.returns) if func.returns else None
            table[f"{module}.{qualname}"] = (f"({ast.unparse(args)})", returns)

        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                add(node.name, node, drop_self=False)
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if not isinstance(item, ast.FunctionDef):
                        continue
                    if any(
                        isinstance(d, ast.Name) and d.id == "property"
                        for d in item.decorator_list
                    ):
                        continue
                    add(f"{node.name}.{item.name}", item, drop_self=True)
                    if item.name == "__init__":
                        sig = table[f"{module}.{node.name}.__init__"]
                        table[f"{module}.{node.name}"] = (sig[0], None)
    return table


def _key(obj: Any) -> str | None:
    owner = getattr(obj, "__objclass__", None)
    module = getattr(owner, "__module__", None) or getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        return None
    return f"{module}.{qualname}"


def _process_signature(
    app: Sphinx,
    what: str,
    name: str,
    obj: Any,
    options: Any,
    signature: str | None,
    return_annotation: str | None,
) -> tuple[str, str | None] | None:
    key = _key(obj)
    if key is None:
        return None
    return _STUBS.get(key)


_STUBS: dict[str, tuple[str, str | None]] = {}


def _builder_inited(app: Sphinx) -> None:
    _STUBS.update(_stub_signatures("connstats"))


def _check_repository_links(app: Sphinx, doctree: nodes.document) -> None:
    prefix = app.config.myst_url_schemes["gh"]["url"].split("{{")[0]
    for node in doctree.findall(nodes.reference):
        uri = node.get("refuri", "")
        if not uri.startswith(prefix):
            continue
        path, _, fragment = uri[len(prefix) :].partition("#")
        if not fragment:
            node["refuri"] = prefix + path
        if not (ROOT / path).exists():
            logger.warning("gh:%s: no such file in the repository", path, location=node)


# -- the command-line reference ---------------------------------------------------


def _blocks(text: str | None) -> list[nodes.Node]:
    """Paragraphs of a description or epilog; indented lines (examples), with
    a line ending in ``:`` above them, become a literal block, as the
    terminal help keeps them."""
    out: list[nodes.Node] = []
    for block in re.split(r"\n\s*\n", (text or "").strip("\n")):
        if not block.strip():
            continue
        lines = block.splitlines()
        head, rest = lines[0], lines[1:]
        if (head[:1].isspace() or head.endswith(":")) and all(
            line[:1].isspace() for line in rest
        ):
            if not head[:1].isspace():
                out.append(nodes.paragraph("", head))
                lines = rest
            code = "\n".join(lines)
            indent = min(
                len(line) - len(line.lstrip()) for line in lines if line.strip()
            )
            code = "\n".join(line[indent:] for line in lines)
            out.append(nodes.literal_block(code, code, language="text"))
        else:
            out.append(nodes.paragraph("", " ".join(block.split())))
    return out


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return str(action.metavar or action.dest)
    if action.nargs == 0:
        return ", ".join(action.option_strings)
    metavar = action.metavar or (
        "{" + ",".join(map(str, action.choices)) + "}"
        if action.choices
        else action.dest.upper()
    )
    return ", ".join(f"{option} {metavar}" for option in action.option_strings)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    if "%" in text:
        params = dict(vars(action), prog=prog)
        if params.get("choices") is not None:
            params["choices"] = ", ".join(map(str, params["choices"]))
        text = text % params
    return " ".join(text.split())


def _parser_section(parser: argparse.ArgumentParser, level: int) -> nodes.section:
    prog = parser.prog
    section = nodes.section("", ids=[nodes.make_id(prog)], names=[prog])
    section += nodes.title("", "", nodes.literal(prog, prog))
    section.extend(_blocks(parser.description))
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"  # usage wrapped as on an 80-column terminal
    try:
        usage = parser.format_usage().strip()
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old
    section += nodes.literal_block(usage, usage, language="text")
    children: list[argparse.ArgumentParser] = []
    for group in parser._action_groups:  # the groups --help prints, in its order
        actions = [a for a in group._group_actions if a.help != argparse.SUPPRESS]
        if not actions:
            continue
        body = nodes.container()
        body += nodes.rubric("", group.title or "")
        body.extend(_blocks(group.description))
        items = nodes.definition_list()
        for action in actions:
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    term = nodes.term("", "", nodes.literal(choice.dest, choice.dest))
                    definition = nodes.definition(
                        "", nodes.paragraph("", _help(choice, prog))
                    )
                    items += nodes.definition_list_item("", term, definition)
                children.extend(action.choices.values())
                continue
            invocation = _invocation(action)
            term = nodes.term("", "", nodes.literal(invocation, invocation))
            term["ids"].append(nodes.make_id(f"{prog} {action.dest}"))
            definition = nodes.definition("", nodes.paragraph("", _help(action, prog)))
            items += nodes.definition_list_item("", term, definition)
        body += items
        section += body
    section.extend(_blocks(parser.epilog))
    for child in children:
        section += _parser_section(child, level + 1)
    return section


class CliReference(SphinxDirective):
    """``.. cli-reference:: package.module:function`` (a function returning
    an ``argparse.ArgumentParser``)."""

    required_arguments = 1
    has_content = False

    def run(self) -> list[nodes.Node]:
        module, _, function = self.arguments[0].partition(":")
        parser = getattr(importlib.import_module(module), function)()
        return [_parser_section(parser, 0)]


def setup(app: Sphinx) -> dict[str, Any]:
    app.add_directive("cli-reference", CliReference)
    app.connect("builder-inited", _builder_inited)
    app.connect("autodoc-process-signature", _process_signature)
    app.connect("doctree-read", _check_repository_links)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
