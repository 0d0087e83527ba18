"""Where the toolkit keeps data on disk (bottom layer: imports nothing from the package)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["data_home"]


def data_home() -> Path:
    """The folder downloads, the demo release and gene indexes live under.

    ``$HMBA_TOOLKIT_DATA`` when set, else ``$XDG_CACHE_HOME/hmba_toolkit`` (``~/.cache/hmba_toolkit``).

    Examples
    --------
    >>> import os
    >>> os.environ["HMBA_TOOLKIT_DATA"] = "/tmp/hmba-data"
    >>> str(data_home())
    '/tmp/hmba-data'
    >>> del os.environ["HMBA_TOOLKIT_DATA"]
    """
    env = os.environ.get("HMBA_TOOLKIT_DATA")
    if env:
        home = Path(env).expanduser()
        if os.path.exists(home) and not os.path.isdir(home):  # os.path: False, not an error, where access is denied
            from .errors import ParameterError

            raise ParameterError(f"$HMBA_TOOLKIT_DATA={env!r} is a file, not a folder: point it at a folder the toolkit "
                                 "may write downloads, the demo release and gene indexes into")
        return home
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "hmba_toolkit"
