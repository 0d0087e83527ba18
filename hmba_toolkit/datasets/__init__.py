"""Embedded demo data in the real Allen layouts, generated on first use.

:func:`fetch_demo` returns the root of a local mirror of the Allen Brain Cell atlas
bucket holding every HMBA-BG directory (the three per-species 10X sets, the aligned
set, the taxonomy, and the MERSCOPE/Xenium spatial sets) with a release manifest whose
sizes and md5 hashes match the files, so :class:`hmba_toolkit.io.AbcCache` reads it
exactly as it reads the real bucket. The ground truth planted in the simulation is
written beside it (:func:`demo_ground_truth`).

The data are generated deterministically (fixed seed) into the user cache directory,
``$HMBA_TOOLKIT_DATA`` when set, else ``$XDG_CACHE_HOME/hmba_toolkit`` (``~/.cache/hmba_toolkit``).
Generation happens once, in a temporary folder that is renamed into place when complete,
under a file lock so parallel processes do not race.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path

from .._files import atomic_dir, file_lock
from .._paths import data_home
from ..errors import ParameterError

__all__ = [
    "fetch_demo", "fetch_demo_ahba", "fetch_demo_brainspan", "fetch_demo_mouse_ish",
    "demo_ground_truth", "data_home", "DEMO_VERSION", "DEMO_MANIFEST",
]

#: Bump when the demo's content changes on purpose; the cache folder is keyed by it.
DEMO_VERSION = "1"
#: The release the tutorials use: the newest public one of the mirror (it adds macaque Patch-seq). The mirror also
#: holds the older public release (``releases/20251031``) and a later one that renames the aligned 10X set and the
#: taxonomy directory (``releases/20261031``), so that switching releases can be tried.
DEMO_MANIFEST = "releases/20260228/manifest.json"



def _source_fingerprint(*modules: str) -> str:
    """Hash of the generator sources, the package modules they call, and the shipped tables.

    ``modules`` are paths relative to the ``hmba_toolkit`` package: changing any of them
    (or a data file) regenerates the demo on the next call.
    """
    digest = hashlib.sha256(DEMO_VERSION.encode())
    top = resources.files("hmba_toolkit")
    for name in modules:
        digest.update(top.joinpath(name).read_bytes())
    pkg = resources.files("hmba_toolkit.datasets")
    for item in sorted(pkg.joinpath("data").iterdir(), key=lambda p: p.name):
        if item.is_file():
            digest.update(item.name.encode())
            digest.update(item.read_bytes())
    return digest.hexdigest()[:16]


def _materialize(name: str, modules: tuple[str, ...], build: Callable[[Path], None]) -> Path:
    """Return ``data_home()/demo-v<N>/<name>``, building it atomically when missing or stale."""
    top = data_home() / f"demo-v{DEMO_VERSION}"
    final = top / name
    stamp = final / ".complete"
    fingerprint = _source_fingerprint(*modules)
    if os.path.isfile(stamp) and stamp.read_text() == fingerprint:  # os.path: False where access is denied
        return final
    try:
        top.mkdir(parents=True, exist_ok=True)
        probe = top / f".{name}.write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ParameterError(f"cannot write the demo data into {top} ({exc.strerror or exc}): set $HMBA_TOOLKIT_DATA to a "
                             "folder you can write (the demo needs about 100 MB)") from exc
    with file_lock(top / f".{name}.lock"):
        if os.path.isfile(stamp) and stamp.read_text() == fingerprint:  # os.path: False where access is denied
            return final
        with atomic_dir(final) as tmp:
            build(tmp)
            (tmp / ".complete").write_text(fingerprint)
    return final


def _build_abc(tmp: Path) -> None:
    from . import _abc_demo

    _abc_demo.generate(tmp / "abc_atlas", tmp / "ground_truth")


def fetch_demo() -> Path:
    """Root of the demo mirror of the ABC atlas bucket (HMBA-BG), generated on first call.

    Returns
    -------
    pathlib.Path
        A folder holding ``releases/<YYYYMMDD>/manifest.json`` (three releases), ``metadata/...``,
        ``expression_matrices/...``, ``image_volumes/...`` and ``mapmycells/...`` exactly as in the bucket.

    Examples
    --------
    >>> root = fetch_demo()
    >>> sorted(p.name for p in (root / "releases").iterdir())
    ['20251031', '20260228', '20261031']
    """
    return _materialize("hmba", ("datasets/_abc_demo.py", "datasets/_abc_spatial.py", "datasets/_abc_patchseq.py",
                                 "datasets/_abc_mapmycells.py", "datasets/_demo_common.py", "normalize.py",
                                 "mapping/stats.py", "mapping/markers.py", "mapping/_tree.py", "mapping/assign.py"),
                        _build_abc) / "abc_atlas"


def _build_mouse(tmp: Path) -> None:
    from . import _mouse_demo

    _mouse_demo.generate(tmp / "mouse_ish", tmp / "ground_truth")


def fetch_demo_mouse_ish() -> Path:
    """Folder of demo Allen mouse ISH data: real annotation grid and ontology, 200 demo grids.

    Holds ``P56_Mouse_gridAnnotation/gridAnnotation.{mhd,raw}`` (real), ``structure_tree.csv``
    (real), ``section_data_sets.csv`` (real gene / SectionDataSet ids, coronal) and
    ``grids/<SectionDataSet id>.zip`` as returned by the Allen grid API (simulated energies; the striatal
    genes' and five other experiments also hold density and intensity grids), and
    ``structure_unionizes/<id>.json`` (plus ``71717084.xml``): Allen-format StructureUnionize answers of those
    experiments, consistent with their grids. Ground truth in ``../ground_truth/``.
    """
    return _materialize("mouse_ish", ("datasets/_mouse_demo.py", "io/mouse_ish.py", "io/ontology.py", "mouse/atlas.py",
                                      "mouse/_unionize.py"), _build_mouse) / "mouse_ish"


def _build_ahba(tmp: Path) -> None:
    from . import _ahba_demo

    _ahba_demo.generate(tmp / "ahba", tmp / "ground_truth")


def fetch_demo_ahba() -> Path:
    """Folder of six demo AHBA donor folders ``normalized_microarray_donor<uid>/`` (real formats).

    Real probe names and re-annotation, real well ids and corrected MNI coordinates;
    simulated expression (see ``hmba_toolkit.datasets._ahba_demo``). Ground truth in
    ``../ground_truth/``.
    """
    return _materialize("ahba", ("datasets/_ahba_demo.py",), _build_ahba) / "ahba"


def _build_brainspan(tmp: Path) -> None:
    from . import _brainspan_demo

    _brainspan_demo.generate(tmp / "brainspan", tmp / "ground_truth")


def fetch_demo_brainspan() -> Path:
    """Folder of a demo BrainSpan RNA-seq genes download (``expression_matrix.csv`` + metadata)."""
    return _materialize("brainspan", ("datasets/_brainspan_demo.py",), _build_brainspan) / "brainspan"


def demo_ground_truth() -> Path:
    """Folder of the ground truth planted in the demo release (programs, effects, patches)."""
    return fetch_demo().parent / "ground_truth"
