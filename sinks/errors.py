"""Errors raised by the sinks (the root, ``DriftlineError``, lives in ``driftline.schemas.errors``)."""

from __future__ import annotations

from driftline.schemas.errors import DriftlineError

__all__ = ["DatabaseUrlError", "DriftlineError", "SinkError", "UnsupportedDialectError"]


class SinkError(DriftlineError):
    """A sink could not write or read its backing store (the driver's error is the ``__cause__``)."""


class UnsupportedDialectError(SinkError, ValueError):
    """The SQL sink was given an engine of a database it does not support.

    Also a ``ValueError``: it is raised from a constructor for a bad ``engine`` argument.
    """


class DatabaseUrlError(SinkError, ValueError):
    """A database URL that is not an SQLAlchemy URL (the message never repeats it: it may hold a password).

    Also a ``ValueError``: it is raised for a bad ``database_url`` argument.
    """
