"""Exceptions raised by hmba_toolkit.

Every error the toolkit raises on bad input derives from :class:`HmbaToolkitError`
and names the file, column or parameter at fault, so a user can catch one class
and still read a precise message.
"""

from __future__ import annotations

__all__ = [
    "HmbaToolkitError",
    "ParameterError",
    "ParameterTypeError",
    "DataFormatError",
    "ManifestError",
    "DownloadError",
    "OfflineError",
    "IntegrityError",
    "MissingFileError",
    "NotFoundError",
    "OutputExistsError",
]


class HmbaToolkitError(Exception):
    """Base class of every error raised by hmba_toolkit."""


class ParameterError(HmbaToolkitError, ValueError):
    """An argument has a value the function cannot use (unknown option, out of range, not in the data).

    Also a :class:`ValueError`, so ``except ValueError`` catches it as it would NumPy's or pandas'.
    """


class ParameterTypeError(HmbaToolkitError, TypeError):
    """An argument has the wrong type (a string where a list is expected, an array where an AnnData is)."""


class DataFormatError(HmbaToolkitError, ValueError):
    """A file does not have the layout, columns or values its format requires."""


class MissingFileError(DataFormatError, FileNotFoundError):
    """A file the toolkit was asked to read does not exist."""


class NotFoundError(HmbaToolkitError, KeyError):
    """A key (structure, experiment, gene label) is not in the table asked."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class OutputExistsError(HmbaToolkitError, FileExistsError):
    """An output file exists already; the function replaces it only when told to (``overwrite=True``)."""


class ManifestError(HmbaToolkitError, KeyError):
    """A release manifest is malformed, or lacks the directory or file asked for."""

    def __str__(self) -> str:  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class DownloadError(HmbaToolkitError, OSError):
    """A download failed (HTTP error, truncated transfer, too many retries).

    ``status`` is the HTTP status code when the server answered with an error, else None.
    """

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class OfflineError(DownloadError):
    """The server could not be reached at all (no network, DNS failure, refused)."""


class IntegrityError(DownloadError):
    """A downloaded file's size or md5 does not match its manifest entry."""
