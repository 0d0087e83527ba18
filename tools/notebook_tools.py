"""Maintenance of the tutorial notebooks (repository tooling, not part of the installed package).

``python tools/notebook_tools.py strip NB...``: after papermill regenerates a notebook in
place, remove papermill's run metadata and per-cell timings (which change every run) while keeping
outputs, execution counts and tags, which nbval needs.

``python tools/notebook_tools.py params PROFILE NB``: print the parameters a profile
(``notebooks/params/<name>.yaml``) gives one notebook, as YAML for ``papermill -f``: the profile's
``defaults`` that the notebook's parameters cell defines, then its ``notebooks.<stem>`` entries;
``$VARIABLES`` and ``~`` in strings are expanded.
"""

from __future__ import annotations

import ast
import os
import sys
from pathlib import Path

import nbformat
import yaml


def strip(path: str) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.metadata.pop("papermill", None)
    nb.metadata["kernelspec"] = {"display_name": "Python 3", "language": "python", "name": "python3"}
    for cell in nb.cells:
        for key in ("papermill", "execution"):
            cell.metadata.pop(key, None)
        cell.metadata.pop("jupyter", None)
    nbformat.write(nb, path)


def parameter_defaults(path: str | os.PathLike) -> dict:
    """The literal assignments of a notebook's ``parameters`` cell."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    if len(cells) != 1:
        raise ValueError(f"{path}: expected one cell tagged 'parameters', found {len(cells)}")
    out = {}
    for node in ast.parse(cells[0].source).body:
        for target in node.targets:
            out[target.id] = ast.literal_eval(node.value)
    return out


def profile_parameters(profile: str | os.PathLike, notebook: str | os.PathLike, *, expand: bool = True) -> dict:
    """Parameters a profile gives one notebook (defaults it defines, then its own entries)."""
    spec = yaml.safe_load(Path(profile).read_text(encoding="utf-8")) or {}
    unknown = set(spec) - {"defaults", "notebooks"}
    if unknown:
        raise ValueError(f"{profile}: unknown top-level keys {sorted(unknown)} (use 'defaults' and 'notebooks')")
    names = parameter_defaults(notebook)
    params = {k: v for k, v in (spec.get("defaults") or {}).items() if k in names}
    params.update((spec.get("notebooks") or {}).get(Path(notebook).stem) or {})
    if expand:
        params = {k: os.path.expanduser(os.path.expandvars(v)) if isinstance(v, str) else v for k, v in params.items()}
    return params


if __name__ == "__main__":
    if len(sys.argv) >= 3 and sys.argv[1] == "strip":
        for p in sys.argv[2:]:
            strip(p)
    elif len(sys.argv) == 4 and sys.argv[1] == "params":
        print(yaml.safe_dump(profile_parameters(sys.argv[2], sys.argv[3]), sort_keys=True), end="")
    else:
        sys.exit("usage: python tools/notebook_tools.py strip NOTEBOOK... | params PROFILE NOTEBOOK")
