"""Renamed parameters and reshaped results keep working for one release, with a FutureWarning (bottom layer)."""

from __future__ import annotations

import functools
import os
import sys
import warnings

from .errors import ParameterTypeError

__all__ = ["REMOVED_IN", "LegacyTuple", "renamed_parameters", "warn", "warn_renamed"]

#: The release in which the old names stop working.
REMOVED_IN = "0.3"


_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def warn(message: str, category: type[Warning] = UserWarning) -> None:
    """``warnings.warn`` attributed to the user's line: the first frame outside the package, however deep the call."""
    frame, level = sys._getframe(1), 2  # stacklevel 1 is this function, 2 its caller
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)


def warn_renamed(old: str, new: str, where: str) -> None:
    warn(f"{where}: {old} is renamed {new}; the old name stops working in hmba_toolkit {REMOVED_IN}", FutureWarning)


def renamed_parameters(**old_to_new: str):
    """Decorator: accept each old keyword with a FutureWarning and pass it on under its new name.

    ``inspect.signature`` of the decorated function shows the new names only (it follows ``__wrapped__``).

    Examples
    --------
    >>> @renamed_parameters(by="groupby")
    ... def f(*, groupby):
    ...     return groupby
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as w:
    ...     warnings.simplefilter("always")
    ...     f(by="Group"), w[0].category.__name__
    ('Group', 'FutureWarning')
    """

    def decorate(func):
        @functools.wraps(func)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise ParameterTypeError(f"{func.__qualname__}() got {old}= and {new}=: {old} is the old name of {new}")
                    warn_renamed(f"parameter {old}=", f"{new}=", f"{func.__module__}.{func.__qualname__}")
                    kwargs[new] = kwargs.pop(old)
            return func(*args, **kwargs)

        wrapper.__renamed_parameters__ = dict(old_to_new)
        return wrapper

    return decorate


class LegacyTuple:
    """Mixin for result dataclasses that used to be tuples: unpacking still works, with a FutureWarning.

    Subclasses set ``_legacy_fields`` to the attribute names in the old tuple order.
    """

    _legacy_fields: tuple[str, ...] = ()

    def _warn_tuple(self) -> None:
        name = type(self).__name__
        warn(f"{name} is no longer a tuple: use its attributes ({', '.join('.' + f for f in self._legacy_fields)}); "
             f"unpacking or indexing it stops working in hmba_toolkit {REMOVED_IN}", FutureWarning)

    def __iter__(self):
        self._warn_tuple()
        return iter([getattr(self, f) for f in self._legacy_fields])

    def __getitem__(self, i):
        if isinstance(i, int):
            self._warn_tuple()
            return getattr(self, self._legacy_fields[i])
        raise ParameterTypeError(f"{type(self).__name__} is indexed by attribute, e.g. .{self._legacy_fields[0]}")
