"""The examples of the pages issue 18 added run as written (doctest)."""

from __future__ import annotations

import doctest
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"


@pytest.mark.parametrize("page", ["library.md", "netlog.md", "coming-from-go.md"])
def test_page_examples(page):
    path = DOCS / page
    if not path.exists():
        pytest.skip(f"{path} is not in this checkout (installed package?)")
    failed, attempted = doctest.testfile(
        str(path), module_relative=False, optionflags=doctest.ELLIPSIS, verbose=False
    )
    assert attempted > 0, f"{page} has no examples"
    assert failed == 0, f"{failed} of {attempted} examples of {page} failed"
