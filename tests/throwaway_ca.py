"""A certificate authority made for one test run (the ``cryptography`` package): a CA, a broker certificate, a client one.

Used by the unit tests of the Kafka settings (files that load, or do not) and by the TLS tests on the
local broker, which installs the broker's certificate on its TLS listeners (``tests/integration/test_secure_kafka.py``).
Keys are EC P-256 (quick to make); the broker's key is unencrypted (Kafka's PEM keystore then needs no
password), the client's is encrypted with a password, as a careful deployment would keep it.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["ThrowawayCA", "make_ca"]


@dataclass(frozen=True)
class ThrowawayCA:
    """The files of :func:`make_ca`."""

    ca: Path  # the CA's certificate (PEM): what clients trust
    broker_keystore: Path  # the broker's key (PKCS#8, unencrypted) and certificate, one PEM file (Kafka's PEM keystore)
    client_certificate: Path  # a client certificate signed by the CA
    client_key: Path  # its key, PKCS#8 encrypted with client_key_password
    client_key_password: str
    other_ca: Path  # a second CA that signed nothing here: a client trusting only it must refuse the broker


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "driftline tests"), x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _authority(common_name: str, now: datetime.datetime) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    certificate = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(_name(common_name)).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                     key_encipherment=False, data_encipherment=False, key_agreement=False, encipher_only=False,
                                     decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, certificate


def _leaf(common_name: str, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, now: datetime.datetime, *,
          hosts: tuple[str, ...], usage: x509.ObjectIdentifier) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    builder = (
        x509.CertificateBuilder().subject_name(_name(common_name)).issuer_name(ca.subject).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return key, builder.sign(ca_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


def make_ca(directory: Path, *, hosts: tuple[str, ...] = ("127.0.0.1", "localhost"), client_key_password: str) -> ThrowawayCA:
    """A CA, a broker certificate for ``hosts`` and a client certificate, as PEM files in ``directory`` (mode 0600)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca_key, ca = _authority("driftline test CA", now)
    _, other = _authority("driftline other CA", now)
    broker_key, broker = _leaf("driftline test broker", ca_key, ca, now, hosts=hosts, usage=ExtendedKeyUsageOID.SERVER_AUTH)
    client_key, client = _leaf("driftline test client", ca_key, ca, now, hosts=(), usage=ExtendedKeyUsageOID.CLIENT_AUTH)
    files = {
        "ca.pem": _pem(ca),
        "other-ca.pem": _pem(other),
        "broker-keystore.pem": broker_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                        serialization.NoEncryption()) + _pem(broker) + _pem(ca),
        "client.pem": _pem(client),
        "client-key.pem": client_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.BestAvailableEncryption(client_key_password.encode())),
    }
    for name, content in files.items():
        path = directory / name
        path.write_bytes(content)
        path.chmod(0o600)
    return ThrowawayCA(ca=directory / "ca.pem", broker_keystore=directory / "broker-keystore.pem",
                       client_certificate=directory / "client.pem", client_key=directory / "client-key.pem",
                       client_key_password=client_key_password, other_ca=directory / "other-ca.pem")
