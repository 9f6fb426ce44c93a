"""The embedded broker's SASL_SSL listener: its CA and certificate, its SCRAM user, and the user's secret.

The CA and the broker's certificate (for 127.0.0.1 and localhost) are made with openssl at the first start, kept
under the runtime folder (<runtime>/kafka-tls, never in git) and reused after. The SCRAM-SHA-512 user and its
random password are made at the same time; the broker learns the credential at each start (Kafka's admin API, over
the PLAINTEXT listener only this machine reaches), and `make deploy` puts it in Secrets Manager on LocalStack, as
MSK keeps its SCRAM secrets, for clients that take KAFKA_SASL_SECRET_ARN.
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pipeline.config import Config
from stack.paths import runtime_dir
from stack.process import ServiceError

SCRAM_USER = "clickstream"
SCRAM_MECHANISM = "SCRAM-SHA-512"
#: MSK only takes SCRAM secrets whose names start with AmazonMSK_; the same name here.
SECRET_NAME = "AmazonMSK_clickstream"
CERTIFICATE_DAYS = 825


@dataclass(frozen=True)
class BrokerTls:
    """What the broker's SASL_SSL listener and its clients need."""

    #: The CA's certificate (PEM): clients trust the broker through it (KAFKA_SSL_CAFILE).
    ca_file: Path
    #: The broker's key and certificate chain (PKCS12), and its password.
    keystore: Path
    keystore_password: str
    username: str
    password: str


def tls_dir() -> Path:
    return runtime_dir() / "kafka-tls"


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if result.returncode:
        raise ServiceError(
            f"kafka: openssl {args[0]} failed making the SASL_SSL listener's certificate:\n{result.stderr}"
        )


def ensure_tls() -> BrokerTls:
    """The listener's material, made once (a CA, the broker's certificate signed by it, the SCRAM password)."""
    folder = tls_dir()
    record = folder / "listener.json"
    if not record.exists():
        staging = folder.with_name(folder.name + ".partial")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True, mode=0o700)
        keystore_password = secrets.token_urlsafe(18)
        _openssl(
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
            "-days", str(CERTIFICATE_DAYS), "-subj", "/CN=clickstream embedded Kafka CA",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=staging,
        )  # fmt: skip
        _openssl(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", "broker.key", "-out", "broker.csr",
            "-subj", "/CN=localhost", cwd=staging,
        )  # fmt: skip
        (staging / "broker.ext").write_text(
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n"
        )
        _openssl(
            "x509", "-req", "-in", "broker.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "broker.pem", "-days", str(CERTIFICATE_DAYS), "-extfile", "broker.ext", cwd=staging,
        )  # fmt: skip
        _openssl(
            "pkcs12", "-export", "-in", "broker.pem", "-inkey", "broker.key", "-certfile", "ca.pem",
            "-out", "broker.p12", "-passout", f"pass:{keystore_password}", cwd=staging,
        )  # fmt: skip
        listener = {
            "keystore_password": keystore_password,
            "username": SCRAM_USER,
            "password": secrets.token_urlsafe(24),
        }
        (staging / "listener.json").write_text(json.dumps(listener))
        for path in staging.iterdir():
            path.chmod(0o600)
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
    listener = json.loads(record.read_text())
    return BrokerTls(
        ca_file=folder / "ca.pem",
        keystore=folder / "broker.p12",
        keystore_password=listener["keystore_password"],
        username=listener["username"],
        password=listener["password"],
    )


def ensure_scram_user(config: Config) -> None:
    """Give the broker the SCRAM user's credential (idempotent: an upsert), over the PLAINTEXT listener."""
    from kafka.admin import KafkaAdminClient, UserScramCredentialUpsertion

    tls = ensure_tls()
    admin = KafkaAdminClient(bootstrap_servers=config.kafka.servers, client_id="clickstream-stack")
    try:
        errors = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(tls.username, SCRAM_MECHANISM, tls.password)]
        )
    finally:
        admin.close()
    failed = {user: error for user, error in (errors or {}).items() if error}
    if failed:
        raise ServiceError(f"kafka: the SCRAM user could not be created: {failed}")


def ensure_secret(config: Config) -> str:
    """The SCRAM user's secret in Secrets Manager on LocalStack (MSK's shape: {"username", "password"}); its ARN."""
    from stack import localstack

    tls = ensure_tls()
    value = json.dumps({"username": tls.username, "password": tls.password})
    client = localstack.client("secretsmanager", config)
    try:
        return client.put_secret_value(SecretId=SECRET_NAME, SecretString=value)["ARN"]
    except client.exceptions.ResourceNotFoundException:
        return client.create_secret(Name=SECRET_NAME, SecretString=value)["ARN"]
