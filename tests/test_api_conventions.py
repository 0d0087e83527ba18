"""The public API keeps one vocabulary (docs/conventions.md): checked over every public function and method."""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import hmba_toolkit

PACKAGE = Path(hmba_toolkit.__file__).parent

#: Names that break the conventions, and the name to use instead.
FORBIDDEN = {
    "by": "groupby", "group_by": "groupby", "gene_symbols": "gene_column", "var_column": "gene_column",
    "normalize": "normalization", "data_type": "normalization", "permutations": "n_permutations",
    "n_perm": "n_permutations", "n_random": "n_permutations", "n_nulls": "n_permutations", "random_state": "seed",
    "rng": "seed", "random_seed": "seed", "pval": "pvalue", "p_value": "pvalue", "fdr": "padj",
}
#: Deliberate exceptions, each with its reason.
ALLOWED = {
    # Allen's abc_atlas_access method names and keywords: code written for Allen's client keeps working
    ("hmba_toolkit.io.AbcCache.get_gene_data", "data_type"): "Allen's get_gene_data keyword",
    ("hmba_toolkit.io.get_gene_data", "data_type"): "Allen's anndata_utils.get_gene_data keyword (the drop-in keeps its signature)",
    ("hmba_toolkit.de.aggregate_counts", "by"): "the deprecated alias of stream.aggregate, removed in 0.3",
}
#: Public callables that still return tuples (no flag switches them); each with its reason.
TUPLE_RESULTS = {
    "GridStore.iter_voxel_chunks": "an iterator of (labels, block) chunks",
    "GeneIndex.column": "(cells, values) of one sparse column, as scipy's find",
}
#: Imports that point up a layer on purpose.
UPWARD_IMPORTS = {("io/abc_cache.py", "datasets"): "AbcCache.from_demo opens the demo release (imported lazily)"}


def _public_callables():
    seen = set()
    for info in pkgutil.walk_packages(hmba_toolkit.__path__, "hmba_toolkit."):
        if any(part.startswith("_") for part in info.name.split(".")) or "datasets" in info.name:
            continue
        module = importlib.import_module(info.name)
        for name in getattr(module, "__all__", []):
            obj = getattr(module, name)
            if inspect.isfunction(obj):
                key = f"{info.name}.{name}"
                if id(obj) not in seen:
                    seen.add(id(obj))
                    yield key, obj
            elif inspect.isclass(obj) and obj.__module__.startswith("hmba_toolkit"):
                for attr, member in vars(obj).items():
                    func = member.__func__ if isinstance(member, (classmethod, staticmethod)) else member
                    if not attr.startswith("_") and inspect.isfunction(func) and id(func) not in seen:
                        seen.add(id(func))
                        yield f"{info.name}.{name}.{attr}", func


CALLABLES = dict(_public_callables())


def test_the_check_sees_the_whole_api():
    assert len(CALLABLES) > 150
    assert "hmba_toolkit.stream.aggregate" in CALLABLES and "hmba_toolkit.nulls.variogram" in CALLABLES


def test_parameter_names_follow_the_conventions():
    bad = []
    for key, func in CALLABLES.items():
        for param in inspect.signature(func).parameters:
            if param in FORBIDDEN and (key, param) not in ALLOWED:
                bad.append(f"{key}({param}=): use {FORBIDDEN[param]}=")
    assert not bad, "parameters that break docs/conventions.md:\n" + "\n".join(bad)


def test_no_result_is_a_tuple_or_switched_by_a_flag():
    bad = []
    for key, func in CALLABLES.items():
        ret = str(inspect.signature(func).return_annotation)
        if re.search(r"(^|[^\w])tuple\[", ret) and not any(key.endswith("." + k) for k in TUPLE_RESULTS):
            bad.append(f"{key} -> {ret}")
        if "|" in ret and "tuple" in ret:
            bad.append(f"{key} -> {ret} (a flag switches the type)")
    assert not bad, "tuple results (use a dataclass):\n" + "\n".join(bad)


def test_renamed_parameters_still_work_with_a_future_warning():
    from hmba_toolkit import nulls

    x = np.random.default_rng(0).standard_normal(30)
    with pytest.warns(FutureWarning, match="n_permutations"):
        old = nulls.naive(x, n=5, seed=1)
    assert np.array_equal(old, nulls.naive(x, n_permutations=5, seed=1))
    with pytest.warns(FutureWarning, match="pvalue"):
        p = nulls.correlate(x, x[::-1], old)["p"]
    assert p == nulls.correlate(x, x[::-1], old).pvalue
    with pytest.warns(FutureWarning, match="no longer a tuple"):
        vals, vecs = nulls.moran_eigenvectors(np.random.default_rng(1).random((20, 2)))
    assert vecs.shape[0] == 20
    with pytest.raises(TypeError, match="old name"):
        nulls.naive(x, n=5, n_permutations=5)


def test_argument_errors_are_also_value_and_type_errors():
    from hmba_toolkit import errors, nulls
    from hmba_toolkit.get import gene_positions

    assert issubclass(errors.ParameterError, ValueError) and issubclass(errors.ParameterTypeError, TypeError)
    with pytest.raises(ValueError):
        nulls.naive(np.zeros(5), n_permutations=0)
    with pytest.raises(TypeError):
        import anndata as ad

        gene_positions(ad.AnnData(np.zeros((1, 1))), "DRD1")
    raised_plain = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py") if "raise HmbaToolkitError(" in p.read_text()]
    assert not raised_plain, f"raise a ValueError/TypeError/KeyError subclass, not the bare base class: {raised_plain}"


def test_importing_the_toolkit_does_not_start_matplotlib():
    code = "import sys, hmba_toolkit; from hmba_toolkit import pl, de, nulls; print('matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_layers_only_import_downward():
    """The bottom modules import nothing above them; io imports no analysis module; nothing imports datasets."""
    bottom = {"_names", "_paths", "_stats", "_log2cpm", "_compat", "_taxonomy", "_arrays", "_files", "_groups", "errors"}
    analysis = {"de", "gsea", "ahba", "mouse", "nulls", "variograms", "coexpression", "cross_species", "stream", "pl",
                "spatial", "autocorrelation", "weights", "normalize", "get", "mapping", "patchseq"}
    problems = []
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        top = rel.parts[0].removesuffix(".py")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:
                target = (node.module or "").split(".")[0] if node.level == (len(rel.parts)) else None
                if node.level == len(rel.parts) and target is not None:
                    if top in bottom and target and target not in bottom:
                        problems.append(f"{rel} (bottom layer) imports {target}")
                    if top == "io" and target in analysis:
                        problems.append(f"{rel} (io) imports {target}")
                    if target == "datasets" and top != "datasets" and (str(rel), target) not in UPWARD_IMPORTS:
                        problems.append(f"{rel} imports the demo layer")
    assert not problems, "\n".join(problems)


def _writes_log2cpm(tree: ast.AST) -> bool:
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, float) and node.value == 1e6:
            return True  # the CPM scale outside its one definition
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "log2" and node.args
                and isinstance(node.args[0], ast.BinOp) and isinstance(node.args[0].op, ast.Add)):
            return True  # log2(... + 1)
    return False


def test_log2cpm_is_written_once():
    offenders = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 if p.name != "_log2cpm.py" and _writes_log2cpm(ast.parse(p.read_text()))]
    assert not offenders, f"log2(CPM + 1) written outside hmba_toolkit/_log2cpm.py: {offenders}"


def test_one_aggregation_serves_memory_files_and_the_old_name(tmp_path):
    import anndata as ad
    import scipy.sparse as sp

    from hmba_toolkit import de, stream

    rng = np.random.default_rng(0)
    X = sp.random(60, 8, density=0.4, random_state=1, format="csr", dtype=np.float64)
    X.data = np.ceil(X.data * 10)
    obs = pd.DataFrame({"g": rng.choice(["a", "b", "c"], 60), "d": rng.choice(["x", "y"], 60)},
                       index=[f"c{i}" for i in range(60)])
    adata = ad.AnnData(X, obs=obs)
    adata.write_h5ad(tmp_path / "m.h5ad")
    mem = stream.aggregate(adata, ["g", "d"])
    disk = stream.aggregate(tmp_path / "m.h5ad", ["g", "d"], obs=obs, progress=False)
    assert sorted(mem.layers) == ["count_nonzero", "mean", "sum", "var"]
    for layer in mem.layers:
        np.testing.assert_allclose(mem.layers[layer], disk.layers[layer], equal_nan=True)
    dense = X.toarray()
    for (g, d), rows in obs.groupby(["g", "d"]).indices.items():
        i = mem.obs_names.get_loc(f"{g}|{d}")
        np.testing.assert_allclose(mem.layers["var"][i], dense[rows].var(axis=0, ddof=1) if len(rows) > 1 else np.nan)
        assert mem.obs["n_obs_aggregated"].iloc[i] == len(rows)
    with pytest.warns(FutureWarning):
        old = de.aggregate_counts(adata, ["g", "d"])
    np.testing.assert_array_equal(old.layers["n_expressing"], mem.layers["count_nonzero"])
    with pytest.warns(FutureWarning, match="groupby"):
        legacy = stream.aggregate(tmp_path / "m.h5ad", obs, ["g", "d"], progress=False)
    np.testing.assert_array_equal(legacy.layers["sum"], disk.layers["sum"])
    shuffled = adata[rng.permutation(60)].copy()
    np.testing.assert_array_equal(stream.aggregate(shuffled, ["g", "d"]).layers["sum"], mem.layers["sum"])


def test_skipped_docstring_examples_say_why():
    """A ``+SKIP`` example must follow a ``>>> # not run: <reason>`` line in the same docstring."""
    missing = []
    for path in PACKAGE.rglob("*.py"):
        lines = path.read_text().splitlines()
        for i, line in enumerate(lines):
            if "doctest: +SKIP" in line:
                block = lines[max(0, i - 12):i]
                if not any(re.search(r">>> # not run: \w+", b) for b in block):
                    missing.append(f"{path.relative_to(PACKAGE)}:{i + 1}")
    assert not missing, "skipped docstring examples without a '>>> # not run: <reason>' line:\n" + "\n".join(missing)



def test_no_public_function_hides_a_module_of_the_same_name():
    """``ahba.normalize`` (function) used to hide ``ahba/normalize.py`` (module): implementation modules are private."""
    clashes = []
    for info in pkgutil.walk_packages(hmba_toolkit.__path__, "hmba_toolkit."):
        if not info.ispkg:
            continue
        package = importlib.import_module(info.name)
        for sub in pkgutil.iter_modules(package.__path__):
            if info.name == "hmba_toolkit" and sub.name in ("__main__",):
                continue
            obj = getattr(package, sub.name, None)
            if obj is not None and not inspect.ismodule(obj):
                clashes.append(f"{info.name}.{sub.name}")
    assert not clashes, f"public names that hide a submodule: {clashes}"
