"""Errors of the Kafka shell; each descends from ``DriftlineError``."""

from __future__ import annotations

from driftline.schemas.errors import DriftlineError

__all__ = ["DeadLetterError", "KafkaAuthenticationError", "KafkaUnavailableError", "PartialsError", "TopicSetupError", "WorkerError"]


class WorkerError(DriftlineError):
    """The worker cannot start: a missing profile, an unmigrated database, a misconfigured topic."""


class DeadLetterError(DriftlineError):
    """The dead-letter topic did not acknowledge every rejected message."""


class PartialsError(DriftlineError):
    """The window-partials topic did not acknowledge every message of a checkpoint."""


class TopicSetupError(DriftlineError):
    """A topic could not be created or prepared (e.g. the client may not create topics)."""


class KafkaUnavailableError(TopicSetupError):
    """Kafka did not answer."""


class KafkaAuthenticationError(KafkaUnavailableError):
    """The broker refused the client's credentials (SASL), or the TLS handshake failed (an untrusted certificate)."""
