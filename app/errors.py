"""Errors of the app layer. Each message is meant to be shown to a person as it is."""

from __future__ import annotations


class AppError(Exception):
    """Base class of the errors the app layer raises on purpose."""


class CatalogError(AppError, ValueError):
    """The model catalog file is missing or malformed."""


class DownloadError(AppError):
    """A model download failed; the message says why and what to do."""


class DownloadCancelledError(DownloadError):
    """The user cancelled; what was downloaded stays and the next attempt resumes."""


class ChecksumMismatchError(DownloadError, ValueError):
    """The finished file's SHA-256 differs from the Hub's; the file was deleted."""


class NotEnoughDiskSpaceError(DownloadError, OSError):
    """Too little free space for the file; nothing was written."""


class OfflineError(DownloadError, ConnectionError):
    """No network (or offline mode) and the model is not on disk."""


class RemoteNotFoundError(DownloadError, FileNotFoundError):
    """The repository or file does not exist on the Hub (or is private)."""


class AccessDeniedError(DownloadError, PermissionError):
    """The repository is gated or private and needs a (valid) token."""


class DocumentError(AppError, ValueError):
    """A document cannot be summarised; the message says why and what to do."""
