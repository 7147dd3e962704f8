"""The connection settings built from the environment and mounted files: Kafka's TLS and SASL, the database password.

What each variable and option means is in README ("Secure connections"); here: each source is read (the variable,
the file it names, the option), the option wins over its variable, two sources of one password are refused, every
mistake is one error naming the variable or option (never the password), ``repr`` shows no secret, and the
settings reach librdkafka's configuration and Faust's (aiokafka's) credentials as they should. The broker side is
``tests/integration/test_secure_kafka.py``.
"""

from __future__ import annotations

import argparse
import copy
import pickle
import ssl
from pathlib import Path

import pytest
import sqlalchemy as sa
from throwaway_ca import ThrowawayCA, make_ca

from driftline.stream.cli.arguments import UsageError, add_kafka_security, database_url, kafka_connection
from driftline.stream.cli.commands import build_parser, main
from driftline.stream.kafka.connection import KafkaConnection, Secret

PASSWORD = "s3cr3t p@ss/wörd"


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap")
    add_kafka_security(parser)
    return parser.parse_args(["--bootstrap", "kafka:9093", *argv])


def _secret_file(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> ThrowawayCA:
    return make_ca(tmp_path_factory.mktemp("ca"), client_key_password="key " + PASSWORD)


def _refused(args: argparse.Namespace, environ: dict[str, str]) -> str:
    with pytest.raises(UsageError) as raised:
        kafka_connection(args, environ)
    message = str(raised.value)
    assert "\n" not in message and PASSWORD not in message
    return message


# -- Kafka: sources --------------------------------------------------------------------------------------------------------

def test_plaintext_by_default() -> None:
    connection = kafka_connection(_args(), {})
    assert connection == KafkaConnection("kafka:9093")
    assert connection.client_config() == {"bootstrap.servers": "kafka:9093"}
    assert connection.faust_credentials() is None
    without_option = argparse.Namespace(**{**vars(_args()), "bootstrap": None})
    assert kafka_connection(without_option, {"DRIFTLINE_KAFKA_BOOTSTRAP": " b1:9092,b2:9092 "}).bootstrap_servers == "b1:9092,b2:9092"
    assert kafka_connection(without_option, {}).bootstrap_servers == "127.0.0.1:9092"


def test_scram_over_tls_from_the_environment(ca: ThrowawayCA) -> None:
    environ = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "sasl_ssl", "DRIFTLINE_KAFKA_SASL_MECHANISM": "scram-sha-512",
               "DRIFTLINE_KAFKA_SASL_USERNAME": "driftline", "DRIFTLINE_KAFKA_SASL_PASSWORD": PASSWORD,
               "DRIFTLINE_KAFKA_SSL_CA_LOCATION": str(ca.ca)}
    connection = kafka_connection(_args(), environ)
    assert connection.client_config() == {
        "bootstrap.servers": "kafka:9093", "security.protocol": "sasl_ssl", "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "driftline", "sasl.password": PASSWORD, "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca.ca),
    }
    assert connection.describe() == f"kafka:9093 (SASL_SSL, SCRAM-SHA-512 as driftline, CA {ca.ca})"


def test_a_password_file_is_read_without_its_final_newline(tmp_path: Path) -> None:
    environ = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
               "DRIFTLINE_KAFKA_SASL_USERNAME": "u",
               "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(_secret_file(tmp_path / "password", PASSWORD + "\n"))}
    assert kafka_connection(_args(), environ).client_config()["sasl.password"] == PASSWORD
    _secret_file(tmp_path / "password", " " + PASSWORD + " \r\n")  # inner spaces are the password's own
    assert kafka_connection(_args(), environ).client_config()["sasl.password"] == " " + PASSWORD + " "


def test_an_option_wins_over_its_variable(tmp_path: Path) -> None:
    environ = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL", "DRIFTLINE_KAFKA_SASL_USERNAME": "from-env",
               "DRIFTLINE_KAFKA_SASL_PASSWORD": "from-env", "DRIFTLINE_KAFKA_SASL_MECHANISM": "PLAIN"}
    password = _secret_file(tmp_path / "password", PASSWORD)
    connection = kafka_connection(_args("--kafka-security-protocol", "SASL_PLAINTEXT", "--kafka-sasl-username", "from-option",
                                        "--kafka-sasl-password-file", str(password)), environ)
    assert (connection.security_protocol, connection.sasl_username, connection.sasl_mechanism) == ("SASL_PLAINTEXT", "from-option", "PLAIN")
    assert connection.client_config()["sasl.password"] == PASSWORD


def test_a_password_given_two_ways_is_refused(tmp_path: Path) -> None:
    environ = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DRIFTLINE_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
               "DRIFTLINE_KAFKA_SASL_USERNAME": "u", "DRIFTLINE_KAFKA_SASL_PASSWORD": PASSWORD,
               "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(_secret_file(tmp_path / "password", PASSWORD))}
    assert _refused(_args(), environ) == ("DRIFTLINE_KAFKA_SASL_PASSWORD and DRIFTLINE_KAFKA_SASL_PASSWORD_FILE are both set: "
                                          "give the password one way")


# -- Kafka: mistakes name their variable or option -------------------------------------------------------------------------

def test_an_unknown_protocol_names_its_variable() -> None:
    message = _refused(_args(), {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "TLS"})
    assert message.startswith("Kafka connection: DRIFTLINE_KAFKA_SECURITY_PROTOCOL must be one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL")


def test_sasl_without_user_mechanism_or_password_names_what_is_missing() -> None:
    sasl = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}
    assert "DRIFTLINE_KAFKA_SASL_MECHANISM must be one of SCRAM-SHA-256, SCRAM-SHA-512, PLAIN" in _refused(_args(), sasl)
    sasl["DRIFTLINE_KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-1"
    assert "got 'SCRAM-SHA-1'" in _refused(_args(), sasl)
    sasl["DRIFTLINE_KAFKA_SASL_MECHANISM"] = "SCRAM-SHA-256"
    assert "DRIFTLINE_KAFKA_SASL_USERNAME: SASL_SSL needs a user name" in _refused(_args(), sasl)
    assert "--kafka-sasl-username" not in _refused(_args(), sasl)
    sasl["DRIFTLINE_KAFKA_SASL_USERNAME"] = "u"
    assert ("DRIFTLINE_KAFKA_SASL_PASSWORD (or DRIFTLINE_KAFKA_SASL_PASSWORD_FILE): SASL_SSL needs a password"
            in _refused(_args(), sasl))


def test_settings_of_a_protocol_not_chosen_are_refused(ca: ThrowawayCA) -> None:
    message = _refused(_args("--kafka-sasl-username", "u"), {})
    assert message == ("Kafka connection: --kafka-sasl-username: SASL settings need security_protocol SASL_PLAINTEXT or SASL_SSL, "
                       "not PLAINTEXT").replace("security_protocol", "DRIFTLINE_KAFKA_SECURITY_PROTOCOL")
    message = _refused(_args(), {"DRIFTLINE_KAFKA_SSL_CA_LOCATION": str(ca.ca), "DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                                 "DRIFTLINE_KAFKA_SASL_MECHANISM": "PLAIN", "DRIFTLINE_KAFKA_SASL_USERNAME": "u",
                                 "DRIFTLINE_KAFKA_SASL_PASSWORD": PASSWORD})
    assert "DRIFTLINE_KAFKA_SSL_CA_LOCATION: TLS settings need DRIFTLINE_KAFKA_SECURITY_PROTOCOL SSL or SASL_SSL, not SASL_PLAINTEXT" in message


def test_unreadable_or_empty_files_name_their_variable(tmp_path: Path) -> None:
    sasl = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "DRIFTLINE_KAFKA_SASL_MECHANISM": "PLAIN",
            "DRIFTLINE_KAFKA_SASL_USERNAME": "u", "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": str(tmp_path / "absent")}
    assert _refused(_args(), sasl) == (f"DRIFTLINE_KAFKA_SASL_PASSWORD_FILE: cannot read the password file {tmp_path / 'absent'}: "
                                       "No such file or directory")
    sasl["DRIFTLINE_KAFKA_SASL_PASSWORD_FILE"] = str(_secret_file(tmp_path / "empty", "\n"))
    assert _refused(_args(), sasl) == f"DRIFTLINE_KAFKA_SASL_PASSWORD_FILE: the password file {tmp_path / 'empty'} is empty"
    assert "DRIFTLINE_KAFKA_SASL_PASSWORD is set but empty" in _refused(_args(), {**sasl, "DRIFTLINE_KAFKA_SASL_PASSWORD_FILE": "",
                                                                                   "DRIFTLINE_KAFKA_SASL_PASSWORD": ""})
    tls = {"DRIFTLINE_KAFKA_SECURITY_PROTOCOL": "SSL", "DRIFTLINE_KAFKA_SSL_CA_LOCATION": str(tmp_path)}
    assert _refused(_args(), tls) == f"DRIFTLINE_KAFKA_SSL_CA_LOCATION: {tmp_path} is not a file"


def test_tls_files_are_opened_once_at_start(ca: ThrowawayCA, tmp_path: Path) -> None:
    not_pem = _secret_file(tmp_path / "ca.pem", "not a certificate\n")
    message = _refused(_args("--kafka-security-protocol", "SSL", "--kafka-ssl-ca-location", str(not_pem)), {})
    assert message.startswith(f"--kafka-ssl-ca-location: {not_pem} holds no usable CA certificate (PEM)")

    client = ["--kafka-security-protocol", "SSL", "--kafka-ssl-ca-location", str(ca.ca), "--kafka-ssl-certificate-location",
              str(ca.client_certificate), "--kafka-ssl-key-location", str(ca.client_key)]
    wrong = {"DRIFTLINE_KAFKA_SSL_KEY_PASSWORD": "not the key's " + PASSWORD}
    for environ in ({}, wrong):  # an encrypted key without its password, or with a wrong one
        assert _refused(_args(*client), environ).startswith(
            "--kafka-ssl-certificate-location, --kafka-ssl-key-location: the client certificate and key do not load")
    key_password = _secret_file(tmp_path / "key-password", ca.client_key_password + "\n")
    connection = kafka_connection(_args(*client, "--kafka-ssl-key-password-file", str(key_password)), {})
    assert connection.client_config()["ssl.key.password"] == ca.client_key_password
    assert connection.client_config()["ssl.certificate.location"] == str(ca.client_certificate)
    assert "client certificate" in connection.describe() and ca.client_key_password not in connection.describe()
    assert "--kafka-ssl-certificate-location" in _refused(_args(*client[:6]), {})  # a certificate without its key


# -- Kafka: secrets stay hidden, and reach the clients ---------------------------------------------------------------------

def test_repr_and_str_show_no_secret(ca: ThrowawayCA) -> None:
    connection = KafkaConnection("kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
                                 sasl_password=Secret(PASSWORD), ssl_ca_location=ca.ca, ssl_certificate_location=ca.client_certificate,
                                 ssl_key_location=ca.client_key, ssl_key_password=Secret(ca.client_key_password))
    for text in (repr(connection), str(connection), f"{connection}", connection.describe(), repr(connection.faust_credentials())):
        assert PASSWORD not in text and ca.client_key_password not in text
    assert "Secret('**********')" in repr(connection)
    assert copy.deepcopy(connection) == connection
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(connection)
    with pytest.raises(ValueError, match="sasl_password must be a Secret, not str"):
        KafkaConnection("k:1", security_protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                        sasl_password=PASSWORD)  # type: ignore[arg-type]


def test_faust_gets_the_same_tls_and_sasl_settings(ca: ThrowawayCA) -> None:
    import faust
    from faust.transport.drivers.aiokafka import credentials_to_aiokafka_auth

    connection = KafkaConnection("kafka:9093", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
                                 sasl_password=Secret(PASSWORD), ssl_ca_location=ca.ca, ssl_certificate_location=ca.client_certificate,
                                 ssl_key_location=ca.client_key, ssl_key_password=Secret(ca.client_key_password))
    credentials = connection.faust_credentials()
    assert isinstance(credentials, faust.SASLCredentials)
    auth = credentials_to_aiokafka_auth(credentials)  # what Faust hands every aiokafka consumer and producer
    assert {k: auth[k] for k in ("security_protocol", "sasl_mechanism", "sasl_plain_username", "sasl_plain_password")} == {
        "security_protocol": "SASL_SSL", "sasl_mechanism": "SCRAM-SHA-256", "sasl_plain_username": "u", "sasl_plain_password": PASSWORD}
    context = auth["ssl_context"]
    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    assert [cert["subject"] for cert in context.get_ca_certs()] == [
        ((("organizationName", "driftline tests"),), (("commonName", "driftline test CA"),))]

    tls_only = KafkaConnection("kafka:9093", security_protocol="SSL", ssl_ca_location=ca.ca)
    assert credentials_to_aiokafka_auth(tls_only.faust_credentials())["security_protocol"] == "SSL"
    scram = KafkaConnection("kafka:9092", security_protocol="SASL_PLAINTEXT", sasl_mechanism="SCRAM-SHA-512", sasl_username="u",
                            sasl_password=Secret(PASSWORD))
    plain_auth = credentials_to_aiokafka_auth(scram.faust_credentials())
    assert plain_auth["security_protocol"] == "SASL_PLAINTEXT" and plain_auth["ssl_context"] is None


def test_no_option_takes_a_password_and_dash_x_may_not_set_one(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    commands = next(action for action in parser._actions if isinstance(action, argparse._SubParsersAction))
    for name in ("worker", "produce"):
        options = [o for action in commands.choices[name]._actions for o in action.option_strings]
        assert "--kafka-sasl-password-file" in options
        assert not [o for o in options if ("password" in o or "secret" in o) and not o.endswith("-file") and o != "--password-env"]
    for setting in ("sasl.password=x", "ssl.key.password=x", "security.protocol=SSL", "bootstrap.servers=a:1", "sasl.oauthbearer.client.secret=x"):
        assert main(["produce", "--model", "credit_risk", "--synthetic", "1", "-X", setting]) == 2
        error = capsys.readouterr().err
        assert error.startswith(f"driftline produce: error: -X {setting.split('=')[0]}: ") and error.count("\n") == 1


def test_a_bad_setting_stops_the_worker_in_one_line(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DRIFTLINE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    assert main(["worker", "--model", "credit_risk", "--database-url", "sqlite://", "--no-metrics"]) == 2
    error = capsys.readouterr().err
    assert error.startswith("driftline worker: error: Kafka connection: DRIFTLINE_KAFKA_SASL_MECHANISM must be one of") and error.count("\n") == 1


# -- the database password -------------------------------------------------------------------------------------------------

def _url(monkeypatch: pytest.MonkeyPatch, url: str, **variables: str) -> str:
    for name in ("DRIFTLINE_DATABASE_URL", "DRIFTLINE_DATABASE_PASSWORD", "DRIFTLINE_DATABASE_PASSWORD_FILE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    return database_url(argparse.Namespace(database_url=url))


def test_the_database_password_joins_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    base = "postgresql+psycopg://driftline@db:5432/driftline?options=-csearch_path%3Dx"
    assert _url(monkeypatch, base) == base
    from_variable = _url(monkeypatch, base, DRIFTLINE_DATABASE_PASSWORD=PASSWORD)
    from_file = _url(monkeypatch, base, DRIFTLINE_DATABASE_PASSWORD_FILE=str(_secret_file(tmp_path / "pw", PASSWORD + "\n")))
    assert from_variable == from_file
    parsed = sa.make_url(from_variable)
    assert parsed.password == PASSWORD and parsed.username == "driftline" and parsed.query == {"options": "-csearch_path=x"}
    assert PASSWORD not in from_variable  # escaped in the URL (@, / and spaces), never as given


def test_database_password_mistakes_are_one_line_without_it(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cases = [
        ("postgresql://u:other@db/d", {"DRIFTLINE_DATABASE_PASSWORD": PASSWORD}, "the database URL has a password already"),
        ("postgresql://u@db/d", {"DRIFTLINE_DATABASE_PASSWORD": PASSWORD, "DRIFTLINE_DATABASE_PASSWORD_FILE": str(tmp_path / "x")},
         "DRIFTLINE_DATABASE_PASSWORD and DRIFTLINE_DATABASE_PASSWORD_FILE are both set"),
        ("postgresql://u@db/d", {"DRIFTLINE_DATABASE_PASSWORD_FILE": str(tmp_path / "absent")},
         "DRIFTLINE_DATABASE_PASSWORD_FILE: cannot read the password file"),
        ("sqlite:///x.sqlite", {"DRIFTLINE_DATABASE_PASSWORD": PASSWORD}, "an SQLite database takes no password"),
        ("not a url", {"DRIFTLINE_DATABASE_PASSWORD": PASSWORD}, "not an SQLAlchemy URL"),
    ]
    for url, variables, expected in cases:
        with pytest.raises(UsageError) as raised:
            _url(monkeypatch, url, **variables)
        assert expected in str(raised.value) and PASSWORD not in str(raised.value) and "other" not in str(raised.value)
