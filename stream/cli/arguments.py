"""Argument types and defaults shared by the ``driftline`` sub-commands."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable

__all__ = ["DEFAULT_BOOTSTRAP", "at_least", "kafka_bootstrap", "positive_float", "positive_int"]

#: Kafka's usual address, when neither ``--bootstrap`` nor ``$DRIFTLINE_KAFKA_BOOTSTRAP`` names one.
DEFAULT_BOOTSTRAP = "127.0.0.1:9092"


def at_least(minimum: int) -> Callable[[str], int]:
    """An argparse type: a whole number of at least ``minimum``.

    >>> at_least(1)("3")
    3
    """

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from exc
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


positive_int = at_least(1)


def positive_float(text: str) -> float:
    """An argparse type: a number > 0.

    >>> positive_float("0.25")
    0.25
    """
    try:
        value = float(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from exc
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def kafka_bootstrap(given: str | None) -> str:
    """``--bootstrap`` if given, else ``$DRIFTLINE_KAFKA_BOOTSTRAP``, else :data:`DEFAULT_BOOTSTRAP` (read when called)."""
    return given or os.environ.get("DRIFTLINE_KAFKA_BOOTSTRAP", "").strip() or DEFAULT_BOOTSTRAP
