"""Session information for the last cell of every tutorial."""

from __future__ import annotations

import platform
import sys
from importlib import metadata

_PACKAGES = ("hmba_toolkit", "numpy", "scipy", "pandas", "anndata", "h5py", "scanpy", "matplotlib", "seaborn", "gseapy")


def session_info(packages: tuple[str, ...] = _PACKAGES) -> str:
    """Python, platform and package versions, one per line (printed and returned)."""
    lines = [f"python {sys.version.split()[0]} ({platform.system()} {platform.machine()})"]
    for name in packages:
        try:
            lines.append(f"{name} {metadata.version(name)}")
        except metadata.PackageNotFoundError:
            lines.append(f"{name} (not installed)")
    text = "\n".join(lines)
    print(text)
    return text
