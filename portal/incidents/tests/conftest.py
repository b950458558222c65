"""Fixtures for the incidents tests: real payload files, an SNS signer with a generated test certificate."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ftw-alarms"


def load(name: str) -> dict:
    return json.loads((FIXTURES / name).read_text())


@pytest.fixture(scope="session")
def sns_keypair():
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=30)).sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


class Signer:
    def __init__(self, key):
        self.key = key

    def sign(self, message: dict, version: str | None = None) -> dict:
        from portal.incidents.sns import string_to_sign

        message = copy.deepcopy(message)
        if version:
            message["SignatureVersion"] = version
        algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message


@pytest.fixture
def sns_signer(sns_keypair, monkeypatch, settings):
    """Messages signed by a test certificate; the real verification code fetches it through CERT_FETCHER."""
    from portal.incidents import sns

    key, pem = sns_keypair
    fetched: list[str] = []

    def fetch(url):
        fetched.append(url)
        return pem

    sns.clear_cache()
    monkeypatch.setattr(sns, "CERT_FETCHER", fetch)
    settings.SNS_ALLOWED_TOPIC_ARNS = [TOPIC]
    signer = Signer(key)
    signer.fetched = fetched
    yield signer
    sns.clear_cache()


@pytest.fixture
def subscribe_calls(monkeypatch):
    from portal.incidents import sns

    calls: list[str] = []
    monkeypatch.setattr(sns, "SUBSCRIBE_FETCHER", lambda url: calls.append(url) or b"<ConfirmSubscriptionResponse/>")
    return calls
