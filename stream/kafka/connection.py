"""How driftline reaches Kafka: the brokers and the connection's security (TLS, SASL), one typed object for every client.

Every Kafka client driftline creates — the worker's batch reader and label reader, its dead-letter,
partials and alerts producers, the admin and probe clients of :mod:`~driftline.stream.kafka.topics`,
the Faust app (aiokafka underneath) and ``driftline produce`` — is built from one
:class:`KafkaConnection`: :meth:`KafkaConnection.client_config` gives librdkafka's settings,
:meth:`KafkaConnection.faust_credentials` Faust's. The command line builds it once, from the
environment and mounted files (:func:`driftline.stream.cli.arguments.kafka_connection`); passwords
are :class:`Secret` values, never shown by ``repr``, ``str`` or a log line.

Nothing here imports confluent-kafka or Faust at import time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import ssl

__all__ = ["SASL_MECHANISMS", "SECURITY_PROTOCOLS", "KafkaConnection", "Secret"]

#: Kafka's security protocols (librdkafka ``security.protocol``, aiokafka ``security_protocol``).
SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
#: The SASL mechanisms driftline configures, in librdkafka's and aiokafka's spelling alike.
SASL_MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN")


class Secret:
    """A password or key that shows itself only when asked: ``repr``, ``str`` and f-strings print asterisks.

    >>> password = Secret("hunter2")
    >>> password, f"{password}", password.reveal()
    (Secret('**********'), '**********', 'hunter2')
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError(f"a Secret holds a str, not {type(value).__name__}")
        self._value = value

    def reveal(self) -> str:
        """The value itself: hand it to the client that needs it, never to a log line or a message."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    def __str__(self) -> str:
        return "**********"

    def __format__(self, spec: str) -> str:
        return str(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and hmac.compare_digest(self._value.encode(), other._value.encode())

    def __hash__(self) -> int:
        return hash((Secret, self._value))

    def __copy__(self) -> Secret:
        return self  # immutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Secret:
        return self

    def __reduce__(self) -> Any:
        # Not pickled with its value by accident (a multiprocessing queue, a cached object).
        raise TypeError("a Secret is not pickled; pass the settings it belongs to by other means")


@dataclass(frozen=True)
class KafkaConnection:
    """The brokers and how to talk to them securely.

    Parameters
    ----------
    bootstrap_servers
        ``host:port[,host:port]``.
    security_protocol
        ``PLAINTEXT`` (default), ``SSL`` (TLS), ``SASL_PLAINTEXT`` or ``SASL_SSL`` (SASL over TLS).
    sasl_mechanism, sasl_username, sasl_password
        With a SASL protocol (and only then): ``SCRAM-SHA-256``, ``SCRAM-SHA-512`` or ``PLAIN``, the
        user and its password.
    ssl_ca_location
        With TLS: the CA certificate(s) (PEM) the broker's certificate must chain to; ``None``: the
        system's CAs. The broker's name is always checked against its certificate.
    ssl_certificate_location, ssl_key_location, ssl_key_password
        With TLS, for brokers that require client certificates: the client's certificate and private
        key (PEM), and the key's password if it is encrypted.

    Raises
    ------
    ValueError
        A setting is missing, unknown, or given where the protocol does not use it (the message names it).

    Examples
    --------
    >>> connection = KafkaConnection("kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
    ...                              sasl_username="driftline", sasl_password=Secret("s3cret"))
    >>> connection.describe()
    'kafka:9093 (SASL_SSL, SCRAM-SHA-512 as driftline)'
    >>> "s3cret" in repr(connection)
    False
    >>> connection.client_config()["sasl.password"]
    's3cret'
    """

    bootstrap_servers: str
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_ca_location: Path | None = None
    ssl_certificate_location: Path | None = None
    ssl_key_location: Path | None = None
    ssl_key_password: Secret | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.bootstrap_servers, str) or not self.bootstrap_servers.strip():
            raise ValueError("bootstrap_servers must name at least one broker, e.g. '127.0.0.1:9092'")
        if self.security_protocol not in SECURITY_PROTOCOLS:
            raise ValueError(f"security_protocol must be one of {', '.join(SECURITY_PROTOCOLS)}, got {self.security_protocol!r}")
        for name in ("sasl_password", "ssl_key_password"):
            if getattr(self, name) is not None and not isinstance(getattr(self, name), Secret):
                raise ValueError(f"{name} must be a Secret, not {type(getattr(self, name)).__name__}")
        if self.uses_sasl:
            if self.sasl_mechanism not in SASL_MECHANISMS:
                raise ValueError(f"sasl_mechanism must be one of {', '.join(SASL_MECHANISMS)} with {self.security_protocol}, "
                                 f"got {self.sasl_mechanism!r}")
            if not self.sasl_username:
                raise ValueError(f"sasl_username: {self.security_protocol} needs a user name")
            if self.sasl_password is None or not self.sasl_password.reveal():
                raise ValueError(f"sasl_password: {self.security_protocol} needs a password")
        else:
            given = [name for name in ("sasl_mechanism", "sasl_username", "sasl_password") if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: SASL settings need security_protocol SASL_PLAINTEXT or SASL_SSL, "
                                 f"not {self.security_protocol}")
        if not self.uses_tls:
            given = [name for name in ("ssl_ca_location", "ssl_certificate_location", "ssl_key_location", "ssl_key_password")
                     if getattr(self, name) is not None]
            if given:
                raise ValueError(f"{', '.join(given)}: TLS settings need security_protocol SSL or SASL_SSL, not {self.security_protocol}")
        if (self.ssl_certificate_location is None) != (self.ssl_key_location is None):
            raise ValueError("ssl_certificate_location and ssl_key_location: a client certificate needs its key, and a key its certificate")
        if self.ssl_key_password is not None and self.ssl_key_location is None:
            raise ValueError("ssl_key_password: there is no ssl_key_location it would open")

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in ("SASL_PLAINTEXT", "SASL_SSL")

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")

    def describe(self) -> str:
        """The brokers and the protocol, for messages and logs (no secret).

        >>> KafkaConnection("127.0.0.1:9092").describe()
        '127.0.0.1:9092'
        >>> KafkaConnection("b:9093", security_protocol="SSL", ssl_ca_location=Path("/etc/kafka/ca.pem")).describe()
        'b:9093 (SSL, CA /etc/kafka/ca.pem)'
        """
        details: list[str] = []
        if self.security_protocol != "PLAINTEXT":
            details.append(self.security_protocol)
        if self.uses_sasl:
            details.append(f"{self.sasl_mechanism} as {self.sasl_username}")
        if self.ssl_ca_location is not None:
            details.append(f"CA {self.ssl_ca_location}")
        if self.ssl_certificate_location is not None:
            details.append(f"client certificate {self.ssl_certificate_location}")
        return self.bootstrap_servers + (f" ({', '.join(details)})" if details else "")

    def client_config(self) -> dict[str, Any]:
        """librdkafka's settings for a client of these brokers: add the client's own settings to them.

        The result holds the passwords in clear (librdkafka needs them): give it to a client, never to a log.

        >>> KafkaConnection("127.0.0.1:9092").client_config()
        {'bootstrap.servers': '127.0.0.1:9092'}
        """
        config: dict[str, Any] = {"bootstrap.servers": self.bootstrap_servers}
        if self.security_protocol == "PLAINTEXT":
            return config
        config["security.protocol"] = self.security_protocol.lower()
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked at construction
            config["sasl.mechanism"] = self.sasl_mechanism
            config["sasl.username"] = self.sasl_username
            config["sasl.password"] = self.sasl_password.reveal()
        if self.uses_tls:
            # librdkafka checks the broker's name against its certificate by default (since 1.9); said here all the same.
            config["ssl.endpoint.identification.algorithm"] = "https"
            if self.ssl_ca_location is not None:
                config["ssl.ca.location"] = str(self.ssl_ca_location)
            if self.ssl_certificate_location is not None:
                config["ssl.certificate.location"] = str(self.ssl_certificate_location)
                config["ssl.key.location"] = str(self.ssl_key_location)
            if self.ssl_key_password is not None:
                config["ssl.key.password"] = self.ssl_key_password.reveal()
        return config

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context of Faust's (aiokafka's) clients: the same CA, hostname check and client certificate as librdkafka's.

        Raises
        ------
        ValueError
            The connection uses no TLS.
        OSError, ssl.SSLError
            A file cannot be read, or the key does not open with its password.
        """
        import ssl

        if not self.uses_tls:
            raise ValueError(f"security_protocol {self.security_protocol} uses no TLS")
        context = ssl.create_default_context(cafile=str(self.ssl_ca_location) if self.ssl_ca_location is not None else None)
        if self.ssl_certificate_location is not None:
            password = self.ssl_key_password.reveal() if self.ssl_key_password is not None else None
            context.load_cert_chain(str(self.ssl_certificate_location), str(self.ssl_key_location), password=password)
        return context

    def faust_credentials(self) -> Any:
        """Faust's ``broker_credentials`` for these settings (``None`` for PLAINTEXT).

        ``faust.SASLCredentials`` (with the TLS context under SASL_SSL) or ``faust.SSLCredentials``;
        Faust hands them to every aiokafka consumer and producer of the app.
        """
        if self.security_protocol == "PLAINTEXT":
            return None
        import faust

        context = self.ssl_context() if self.uses_tls else None
        if self.uses_sasl:
            assert self.sasl_password is not None  # checked at construction
            return faust.SASLCredentials(
                username=self.sasl_username, password=self.sasl_password.reveal(), ssl_context=context, mechanism=self.sasl_mechanism,
            )
        return faust.SSLCredentials(context)
