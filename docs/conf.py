"""Sphinx configuration of the connstats documentation site.

Pages are Markdown (MyST).  Build it as CI does, warnings as errors:

    python -m pip install -e . -r requirements/docs.txt
    sphinx-build -W --keep-going -b html docs build/docs

The command-line reference is generated from ``connstats.cli.build_parser()``
and the API reference from the docstrings, with the signatures of the
compiled core taken from its stubs (``connstats/*.pyi``): neither can drift
from the code.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent / "_ext"))

import connstats

project = "connstats"
author = "connstats developers"
copyright = "connstats developers"
release = connstats.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "connstats_docs",
]

root_doc = "index"
source_suffix = {".md": "markdown"}
# Only the pages are sources; the page-example test and the local
# extension live next to them.
exclude_patterns = ["_build", "_ext", "Thumbs.db", ".DS_Store"]

# -- MyST ------------------------------------------------------------------
myst_enable_extensions = ["deflist", "colon_fence"]
# [text](page.md#a-heading) links resolve to the heading's anchor
myst_heading_anchors = 3
# gh:PATH links a file of the repository (benchmarks/RESULTS.md,
# examples/...); the connstats_docs extension fails the build when PATH
# does not exist in the checkout.
REPOSITORY = "https://github.com/connstats/connstats"
myst_url_schemes = {
    "http": None,
    "https": None,
    "mailto": None,
    "gh": {
        "url": REPOSITORY + "/blob/main/{{path}}#{{fragment}}",
        "title": "{{path}}",
    },
}

# -- autodoc -----------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_default_options = {"members": True, "undoc-members": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# -- HTML --------------------------------------------------------------------
# Plain quotes and dashes: option names (--max-period) must read as typed.
smartquotes = False

html_theme = "furo"
html_title = f"connstats {release}"
html_static_path: list[str] = []
html_theme_options = {
    "source_repository": REPOSITORY,
    "source_branch": "main",
    "source_directory": "docs/",
}
