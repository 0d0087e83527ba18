"""Sphinx configuration: myst-nb renders the committed notebooks (no execution), autodoc the API."""

from __future__ import annotations

import shutil
from pathlib import Path

import hmba_toolkit

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent

project = "hmba_toolkit"
author = "the hmba_toolkit developers"
copyright = "2026, the hmba_toolkit developers; data: Allen Institute for Brain Science (see Data)"
release = version = hmba_toolkit.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]
napoleon_google_docstring = False
napoleon_numpy_docstring = True
napoleon_use_rtype = False
napoleon_use_ivar = True  # 'Attributes' sections as fields: no duplicate entries beside dataclass fields
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "undoc-members": False, "show-inheritance": False}
nb_execution_mode = "off"  # the committed outputs, produced in the locked environment, are what we render
myst_enable_extensions = ["dollarmath"]
html_theme = "pydata_sphinx_theme"
html_title = "hmba_toolkit"
html_theme_options = {"navigation_with_keys": False}
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]


def _copy_notebooks(app) -> None:
    """Sphinx reads sources under docs/ only: mirror the committed notebooks into docs/tutorials/."""
    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    for old in target.glob("*.ipynb"):
        old.unlink()
    for nb in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        shutil.copy2(nb, target / nb.name)


def setup(app):
    app.connect("builder-inited", _copy_notebooks)
