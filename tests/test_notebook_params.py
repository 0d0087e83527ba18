"""Parameter contract (no execution): every profile key reaches a notebook parameter of the right type."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))  # repository tooling, not the package
from notebook_tools import parameter_defaults, profile_parameters  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
PROFILES = sorted((NOTEBOOKS / "params").glob("*.yaml"))
PARAMS = {p.stem: parameter_defaults(p) for p in sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))}


def test_profiles_exist():
    assert {p.stem for p in PROFILES} >= {"publication", "real_data"}


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.stem)
def test_profile_keys_exist_in_the_notebooks_that_receive_them(profile):
    spec = yaml.safe_load(profile.read_text())
    assert set(spec) <= {"defaults", "notebooks"}
    for key in spec.get("defaults") or {}:
        assert any(key in names for names in PARAMS.values()), f"{profile.name}: default {key} is no notebook's parameter"
    for stem, entries in (spec.get("notebooks") or {}).items():
        assert stem in PARAMS, f"{profile.name}: no notebook {stem}"
        for key, value in entries.items():
            assert key in PARAMS[stem], f"{profile.name}: {stem} has no parameter {key}"
    for stem, names in PARAMS.items():
        given = profile_parameters(profile, NOTEBOOKS / f"{stem}.ipynb", expand=False)
        for key, value in given.items():
            default = names[key]
            ok = default is None or value is None or isinstance(value, type(default)) or (
                isinstance(default, float) and isinstance(value, int))
            assert ok, f"{profile.name}: {stem}.{key} = {value!r} does not match the default's type {type(default).__name__}"


def test_shared_names_mean_the_same_thing():
    # SEED everywhere; DATA_DIR, when present, defaults to None (the demo)
    for stem, names in PARAMS.items():
        assert "SEED" in names and isinstance(names["SEED"], int), stem
        if "DATA_DIR" in names:
            assert names["DATA_DIR"] is None, stem


def test_profile_parameters_expand_and_override(tmp_path, monkeypatch):
    monkeypatch.setenv("HMBA_ABC_CACHE", "/data/abc")
    monkeypatch.setenv("HMBA_AHBA_DIR", "/data/ahba")
    got = profile_parameters(NOTEBOOKS / "params" / "real_data.yaml", NOTEBOOKS / "08_ahba_processing.ipynb")
    assert got == {"DATA_DIR": "/data/ahba"}  # the notebook's own entry wins; N_PERMUTATIONS is not its parameter
    got = profile_parameters(NOTEBOOKS / "params" / "real_data.yaml", NOTEBOOKS / "01_getting_started.ipynb")
    assert got == {"DATA_DIR": "/data/abc"}
    bad = tmp_path / "bad.yaml"
    bad.write_text("default:\n  SEED: 1\n")
    with pytest.raises(ValueError, match="unknown top-level"):
        profile_parameters(bad, NOTEBOOKS / "01_getting_started.ipynb")
