"""Fixtures for the incidents tests: real payload files, an SNS signer with a generated test certificate."""

from __future__ import annotations

import base64
import copy
import datetime as dt
import io
import json
from pathlib import Path

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from tests.plugins.standins import slack_standin, smtp_standin, twilio_standin  # noqa: F401 - the stand-ins' fixtures

FIXTURES = Path(__file__).resolve().parents[3] / "tests" / "fixtures"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ftw-alarms"
CERT_URL = "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"
SUBSCRIBE_URL = json.loads((FIXTURES / "sns" / "subscription-confirmation.json").read_text())["SubscribeURL"]


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

    def sign(self, message: dict, version: str | None = None, *, fresh: bool = True) -> dict:
        from portal.incidents.sns import string_to_sign

        message = copy.deepcopy(message)
        if version:
            message["SignatureVersion"] = version
        if fresh:
            # The fixtures were captured days ago; SNS signs with the time it sends.
            message["Timestamp"] = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        algorithm = hashes.SHA1() if message["SignatureVersion"] == "1" else hashes.SHA256()  # noqa: S303
        signature = self.key.sign(string_to_sign(message), padding.PKCS1v15(), algorithm)
        message["Signature"] = base64.b64encode(signature).decode()
        return message


class FakeAWS(requests.adapters.BaseAdapter):
    """The https:// transport of sns.SESSION in tests: answers from `routes` (URL -> (status, body,
    headers)) and records every request it was asked to send. Nothing leaves the process."""

    def __init__(self):
        super().__init__()
        self.routes: dict[str, tuple[int, bytes, dict]] = {}
        self.sent: list[requests.PreparedRequest] = []
        self.kwargs: list[dict] = []
        self.cert_fetches: list[str] = []
        self.confirmations: list[str] = []

    def send(self, request, **kwargs):
        self.sent.append(request)
        self.kwargs.append(kwargs)
        (self.cert_fetches if request.url.endswith(".pem") else self.confirmations).append(request.url)
        status, body, headers = self.routes.get(request.url, (404, b"<Error><Code>NotFound</Code></Error>", {}))
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        return response

    def close(self):
        pass

    @property
    def urls(self) -> list[str]:
        return [r.url for r in self.sent]


@pytest.fixture
def fake_aws(monkeypatch):
    """Replace the one network seam of sns.py (its session's https:// adapter); the checks stay real."""
    from portal.incidents import sns

    adapter = FakeAWS()
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    monkeypatch.setattr(sns, "SESSION", session)
    sns.clear_cache()
    yield adapter
    sns.clear_cache()


@pytest.fixture
def sns_signer(sns_keypair, fake_aws, settings):
    """Messages signed by a test certificate that fake AWS serves at the fixtures' SigningCertURL."""
    key, pem = sns_keypair
    fake_aws.routes[CERT_URL] = (200, pem, {"Content-Type": "application/x-x509-ca-cert"})
    settings.SNS_ALLOWED_TOPIC_ARNS = [TOPIC]
    signer = Signer(key)
    signer.aws = fake_aws
    signer.fetched = fake_aws.cert_fetches
    return signer


@pytest.fixture
def subscribe_calls(fake_aws):
    """URLs fake AWS was asked to GET to confirm a subscription; it answers 200 to the fixture's."""
    fake_aws.routes[SUBSCRIBE_URL] = (200, b"<ConfirmSubscriptionResponse/>", {})
    return fake_aws.confirmations


@pytest.fixture(autouse=True)
def _fresh_reject_sampler():
    from portal.incidents.rejects import REJECT_SAMPLER

    REJECT_SAMPLER.reset()
    yield
    REJECT_SAMPLER.reset()
