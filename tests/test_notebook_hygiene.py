"""Conventions of the tutorial notebooks, checked rather than reviewed."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


def test_notebooks_exist_and_are_numbered_contiguously():
    names = [p.name for p in NOTEBOOKS]
    assert names, "no notebooks found"
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", n) for n in names), names
    assert [int(n[:2]) for n in names] == list(range(1, len(names) + 1))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_anatomy(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    assert "papermill" not in nb.metadata
    code = [c for c in nb.cells if c.cell_type == "code"]
    tags = [c.metadata.get("tags", []) for c in code]
    assert nb.cells[0].cell_type == "markdown" and nb.cells[0].source.startswith("# ")
    intro = nb.cells[0].source
    for part in ("**Overview.**", "**Learning objectives**", "**Prerequisites:**", "**Runtime:**", "**memory:**", "References"):
        assert part in intro, f"the first cell lacks {part!r}"
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "## Summary and next steps" in markdown
    assert nb.cells[-1].cell_type == "code" and "session_info()" in nb.cells[-1].source, "end with the session info"
    assert sum("parameters" in t for t in tags) == 1 and "parameters" in tags[1]
    assert not any("injected-parameters" in t for t in tags)
    assert sum("nbval-check-output" in t for t in tags) >= 3
    params = ast.parse(code[1].source)
    for node in params.body:
        assert isinstance(node, ast.Assign), "the parameters cell holds assignments only"
        ast.literal_eval(node.value)  # raises unless a literal (numbers, strings, None, lists/dicts of literals)
    assert "SEED" in {t.id for n in params.body for t in n.targets}
    for i, cell in enumerate(code):
        tree = ast.parse(cell.source)
        assert not any(isinstance(n, (ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef)) for n in ast.walk(tree)), f"def/class in cell {i}"
        # a loop of logic in a cell means the package lacks a function (comprehensions are expressions, allowed)
        assert not any(isinstance(n, (ast.For, ast.While, ast.AsyncFor)) for n in ast.walk(tree)), f"for/while loop in cell {i}"
        if i > 0:
            assert not any(isinstance(n, (ast.Import, ast.ImportFrom)) for n in tree.body), f"import outside the first code cell: {i}"
        assert not re.search(r"^\s*[!%]", cell.source, re.M), f"shell escape or magic in cell {i}"
    counts = [c.execution_count for c in code]
    assert counts == list(range(1, len(code) + 1)), "outputs must come from one top-to-bottom run"
    text = nbformat.writes(nb)
    assert "/root/" not in text and "/home/" not in text, "absolute paths in the committed notebook"


def test_readmes_list_every_notebook():
    root = Path(__file__).resolve().parents[1]
    index = (root / "notebooks" / "README.md").read_text()
    readme = (root / "README.md").read_text()
    for p in NOTEBOOKS:
        assert p.name in index, f"notebooks/README.md does not list {p.name}"
        assert p.stem in readme, f"README.md does not list {p.stem}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_size_cap(path):
    assert path.stat().st_size < 2_000_000, "keep committed notebooks under 2 MB"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_figures_are_rendered(path):
    """A cell that shows a figure must carry it (a non-inline backend silently drops figures)."""
    nb = nbformat.read(path, as_version=4)
    for i, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):
        if "plt.show()" in cell.source:
            kinds = {k for o in cell.outputs for k in o.get("data", {})}
            assert "image/png" in kinds, f"code cell {i} calls plt.show() but has no image output"


def test_binder_badge_and_postbuild():
    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    badge = re.search(r"mybinder\.org/v2/gh/[^)\s]+\?labpath=([^)\s]+)", readme)
    assert badge, "README lacks the Binder launch badge"
    assert badge.group(1).replace("%2F", "/") == f"notebooks/{NOTEBOOKS[0].name}", "the badge opens the first notebook"
    post = (root / "binder" / "postBuild").read_text()
    assert "pip install" in post and "-e ." in post and "hmba_toolkit.datasets" in post
    runtime = (root / "binder" / "runtime.txt").read_text().strip()
    assert re.fullmatch(r"python-3\.\d+", runtime)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_references_carry_dois(path):
    intro = nbformat.read(path, as_version=4).cells[0].source
    references = intro[intro.index("References:"):]
    assert re.search(r"\(https://doi\.org/10\.\d{4,9}/\S+\)", references), "cite at least one paper with a DOI link"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_stated_runtime_and_memory_are_the_measured_ones(path):
    """The first cell states what tools/notebook_memory.py measured (bench/notebook_memory.csv), under 1 GB."""
    import csv
    import math

    table = Path(__file__).resolve().parents[1] / "bench" / "notebook_memory.csv"
    rows = {r["notebook"]: r for r in csv.DictReader(table.open())}
    assert path.stem in rows, f"{path.stem} not measured: run python tools/notebook_memory.py --write"
    row = rows[path.stem]
    intro = nbformat.read(path, as_version=4).cells[0].source
    runtime = re.search(r"\*\*Runtime:\*\* about (\d+) s", intro)
    memory = re.search(r"\*\*memory:\*\* peak (\d+) MB", intro)
    assert runtime and memory, "state '**Runtime:** about N s' and '**memory:** peak M MB'"
    assert int(memory.group(1)) == 10 * math.ceil(float(row["peak_pss_mb"]) / 10)
    assert int(runtime.group(1)) == max(5, 5 * round(float(row["seconds"]) / 5))
    assert float(row["peak_pss_mb"]) < 1024, "every notebook must fit a workshop Binder: under 1 GB"


#: Cells a user copies into a fresh session: (notebook, cells run first after the imports and parameters, the cell).
#: Each prerequisite is the notebook's one data call; the copied cell then needs nothing else.
COPIED_CELLS = [
    ("04_differential_expression.ipynb", ["raw = cache.read_expression"], "pb = pseudobulk("),
    ("07_spatial_genes_coexpression.ipynb", ["expr = cache.read_expression"], "striatal = spatial.Geometry("),
    ("09_brain_map_gene_enrichment.ipynb", ["result = process("], "surrogates = {"),
    ("10_mouse_whole_brain_ish.ipynb", ["grid = read_gene_ish_grid("], "per_structure = mouse.unionize("),
    ("06_spatial_slabs_taxonomy.ipynb", ["cells = cache.cell_table("], "assigned = assign_cells_by_plane("),
]


@pytest.mark.parametrize("name,prerequisites,target", COPIED_CELLS, ids=[c[0][:2] for c in COPIED_CELLS])
def test_a_copied_cell_runs_in_a_fresh_process(name, prerequisites, target, tmp_path):
    """The issue's scenario: imports + parameters + one data call + the copied cell, in a new Python process."""
    import os
    import subprocess
    import sys

    nb = nbformat.read(NOTEBOOKS[0].parent / name, as_version=4)
    code = [c.source for c in nb.cells if c.cell_type == "code"]

    def find(prefix):
        hits = [src for src in code if any(line.startswith(prefix) for line in src.splitlines())]
        assert len(hits) == 1, f"{name}: {len(hits)} cells have a line starting {prefix!r}"
        return hits[0]

    wanted = [find(p) for p in prerequisites] + [find(target)]
    assert code.index(wanted[-1]) > max(code.index(w) for w in wanted[:-1])
    script = "\n\n".join([code[0], code[1], *wanted]).replace("plt.show()", "plt.close('all')")
    path = tmp_path / "copied_cell.py"
    path.write_text(script)
    env = dict(os.environ, MPLBACKEND="Agg")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600)
    assert out.returncode == 0, f"{name}: the copied cell failed in a fresh process:\n{out.stderr[-3000:]}"
