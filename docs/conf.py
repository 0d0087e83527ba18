"""Sphinx configuration: myst-nb renders the committed notebooks (no execution), autodoc the API."""

from __future__ import annotations

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
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,  # the page's sections in the right-hand sidebar
    "secondary_sidebar_items": ["page-toc", "sourcelink"],
}
html_static_path = ["_static"]
html_css_files = ["hmba.css"]
toc_object_entries_show_parents = "hide"  # functions listed by name in the page's table of contents
exclude_patterns = ["_build", "**.ipynb_checkpoints"]
suppress_warnings = ["mystnb.unknown_mime_type"]


REPOSITORY = "hmba-toolkit/hmba_toolkit"
BINDER = "https://mybinder.org/v2/gh/{repo}/HEAD?labpath=notebooks%2F{name}"
SOURCE = "https://github.com/{repo}/blob/main/notebooks/{name}"
RAW = "https://raw.githubusercontent.com/{repo}/main/notebooks/{name}"


def _launch_links(name: str) -> str:
    """The markdown line put under each tutorial's title: run it on Binder, view or download the notebook."""
    fmt = {"repo": REPOSITORY, "name": name}
    return (f"[![Launch on Binder](https://mybinder.org/badge_logo.svg)]({BINDER.format(**fmt)}) "
            f"[view `{name}` on GitHub]({SOURCE.format(**fmt)}) · [download the notebook]({RAW.format(**fmt)})")


def _copy_notebooks(app) -> None:
    """Sphinx reads sources under docs/ only: mirror the committed notebooks into docs/tutorials/, each with a
    Binder badge and links to its file under the title."""
    import nbformat

    target = HERE / "tutorials"
    target.mkdir(exist_ok=True)
    for old in target.glob("*.ipynb"):
        old.unlink()
    for nb_path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(nb_path, as_version=4)
        title, _, rest = nb.cells[0].source.partition("\n")
        nb.cells[0].source = f"{title}\n\n{_launch_links(nb_path.name)}\n{rest}"
        nbformat.write(nb, target / nb_path.name)


def setup(app):
    app.connect("builder-inited", _copy_notebooks)
