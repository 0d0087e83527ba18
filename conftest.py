"""Repository-level pytest configuration (applies to tests/ and to nbval over notebooks/)."""


def pytest_collectstart(collector):
    # warnings and progress bars go to stderr and change between library versions:
    # nbval compares stdout and rich outputs only
    path = getattr(collector, "path", None)
    if path is not None and path.suffix == ".ipynb":
        collector.skip_compare += ("stderr",)
