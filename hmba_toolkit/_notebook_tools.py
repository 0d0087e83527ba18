"""Maintenance of the tutorial notebooks: ``python -m hmba_toolkit._notebook_tools strip NB...``.

After papermill regenerates a notebook in place, this removes papermill's run metadata and
per-cell timings (which change every run) while keeping outputs, execution counts and tags,
which nbval needs.
"""

from __future__ import annotations

import sys

import nbformat


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        cell.metadata.pop("jupyter", None)
    nbformat.write(nb, path)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "strip":
        sys.exit("usage: python -m hmba_toolkit._notebook_tools strip NOTEBOOK...")
    for p in sys.argv[2:]:
        strip(p)
