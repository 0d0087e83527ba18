"""Argument checks shared by the public functions: counts, seeds and numeric arrays, each error naming the parameter.

One place decides what a "number of permutations", a "seed" or "a numeric map" is, so that every
module refuses the same bad values with the same words (``docs/errors.md``).
"""

from __future__ import annotations

import numbers

import numpy as np

from .errors import ParameterError, ParameterTypeError

__all__ = ["check_anndata", "check_column_name", "check_count", "check_layer", "check_seed", "numeric_array", "warn_constant_columns"]


def check_count(value, name: str, minimum: int = 1, what: str = "") -> int:
    """``value`` as an ``int`` of at least ``minimum``; a float, string or bool is refused by name.

    Examples
    --------
    >>> check_count(5, "n_permutations")
    5
    >>> check_count(2.5, "k")
    Traceback (most recent call last):
    ...
    hmba_toolkit.errors.ParameterTypeError: k must be a whole number, not 2.5 (float)
    """
    if isinstance(value, bool) or not isinstance(value, (numbers.Integral, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            raise ParameterTypeError(f"{name} must be a whole number, not {value!r} ({type(value).__name__})")
    value = int(value)
    if value < minimum:
        raise ParameterError(f"{name} must be >= {minimum}{' ' + what if what else ''}, got {value}")
    return value


def check_seed(seed, name: str = "seed"):
    """A seed numpy accepts: a non-negative integer, a sequence of them, or ``None``.

    Examples
    --------
    >>> check_seed("a")
    Traceback (most recent call last):
    ...
    hmba_toolkit.errors.ParameterTypeError: seed must be a non-negative integer (or None), not 'a'
    """
    if seed is None or isinstance(seed, np.random.Generator):
        return seed
    values = seed if isinstance(seed, (list, tuple)) else [seed]
    for v in values:
        if isinstance(v, bool) or not isinstance(v, (numbers.Integral, np.integer)) or v < 0:
            raise ParameterTypeError(f"{name} must be a non-negative integer (or None), not {seed!r}")
    return seed


def numeric_array(value, name: str) -> np.ndarray:
    """``value`` as a float array; text or objects that are not numbers get an error naming ``name``."""
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise ParameterTypeError(f"{name} must hold numbers ({exc})") from None


def warn_constant_columns(X: np.ndarray, names, what: str, result: str = "NaN") -> np.ndarray:
    """Warn, naming them, about columns of ``X`` with a single value; returns their mask."""
    import warnings

    constant = np.ptp(X, axis=0) == 0 if X.shape[0] else np.ones(X.shape[1], bool)
    if constant.any():
        shown = [str(n) for n in np.asarray(list(names), dtype=object)[constant][:5]]
        warnings.warn(f"{what}: {int(constant.sum())} constant column(s) {shown} have no variance; their statistics are {result}",
                      UserWarning, stacklevel=3)
    return constant


def check_layer(adata, layer: str | None, name: str = "adata") -> None:
    """Refuse a ``layer`` the AnnData does not have, listing the layers it has."""
    if layer is not None and layer not in adata.layers:
        raise ParameterError(f"layer {layer!r} is not in {name}.layers; layers: {list(adata.layers)}")


def check_anndata(value, function: str, name: str = "adata") -> None:
    """Refuse anything but an AnnData for ``name``, saying how to get one from a file name."""
    import anndata as ad

    if not isinstance(value, ad.AnnData):
        hint = "; read the file first (io.read_h5ad_subset or AbcCache.read_expression)" if isinstance(value, (str, bytes)) else ""
        raise ParameterTypeError(f"{function}: {name} must be an AnnData (cells x genes), not {type(value).__name__}{hint}")


def check_column_name(value, name: str, what: str = "obs column name") -> str:
    """Refuse anything but one column name (a list where one name is expected, a number), naming the parameter."""
    if not isinstance(value, str):
        raise ParameterTypeError(f"{name} must be one {what}, not {value!r}")
    return value
