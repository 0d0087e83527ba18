from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from _http import BucketServer  # noqa: E402

from hmba_toolkit.datasets import fetch_demo  # noqa: E402

import os  # noqa: E402

# The loopback test servers speak plain http: allow it explicitly (the toolkit refuses http by default).
os.environ["HMBA_TOOLKIT_ALLOW_HTTP"] = "1"

# Real reference files the tests read (sources and licences: tests/data/README.md). They live in the
# repository: a fresh clone runs the whole suite with nothing beside it.
FIXTURES = Path(__file__).resolve().parent / "data"


@pytest.fixture(scope="session")
def demo_root() -> Path:
    return fetch_demo()


@pytest.fixture(scope="session")
def cache(demo_root):
    """The demo release opened local-only, shared by the test modules."""
    from hmba_toolkit.io import AbcCache

    from hmba_toolkit.datasets import DEMO_MANIFEST

    return AbcCache(demo_root, base_url=None, manifest=DEMO_MANIFEST)


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    return FIXTURES


@pytest.fixture
def bucket(demo_root):
    with BucketServer(demo_root) as server:
        yield server
