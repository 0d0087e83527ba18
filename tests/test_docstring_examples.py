"""Every runnable example in the package's docstrings runs and prints what it shows.

Examples marked ``# doctest: +SKIP`` follow a ``>>> # not run: <reason>`` line (real Allen downloads, user files, or
work a tutorial runs); tests/test_api_conventions.py checks that every skip says why.
"""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import hmba_toolkit

MODULES = sorted(m.name for m in pkgutil.walk_packages(hmba_toolkit.__path__, "hmba_toolkit.") if not m.name.endswith("__main__"))


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    module = importlib.import_module(name)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in doctest.DocTestFinder(exclude_empty=True).find(module, name):
        if test.filename and not test.filename.endswith(".py"):
            continue
        runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{name}: {result.failed} of {result.attempted} docstring examples failed (output above)"


def test_examples_exist_where_the_data_is_shipped():
    attempted = 0
    for name in MODULES:
        runner = doctest.DocTestRunner()
        for test in doctest.DocTestFinder(exclude_empty=True).find(importlib.import_module(name), name):
            runner.run(test, out=lambda s: None)
        attempted += runner.summarize(verbose=False).attempted
    assert attempted >= 80
