"""AWS SNS HTTP(S) deliveries: envelope checks, signature verification (versions 1 and 2), topic allowlist.

The signing certificate is fetched only over HTTPS from sns.<region>.amazonaws.com and cached by
URL. `CERT_FETCHER` is the one function that goes to the network; tests replace it.
"""

from __future__ import annotations

import base64
import re
import threading
from urllib.parse import urlparse

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from django.conf import settings

from portal.incidents.parsing import PayloadError

_SNS_HOST = re.compile(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$")
TYPES = ("SubscriptionConfirmation", "Notification", "UnsubscribeConfirmation")
_FIELDS = {
    "Notification": ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
    "UnsubscribeConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"),
}
_REQUIRED = {
    "Notification": ("Message", "MessageId", "Timestamp", "TopicArn", "Type", "Signature", "SigningCertURL", "SignatureVersion"),
    "SubscriptionConfirmation": ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type", "Signature", "SigningCertURL", "SignatureVersion"),
}
_REQUIRED["UnsubscribeConfirmation"] = _REQUIRED["SubscriptionConfirmation"]


def is_sns_url(url: str) -> bool:
    try:
        parts = urlparse(url)
    except ValueError:
        return False
    return parts.scheme == "https" and bool(parts.hostname) and bool(_SNS_HOST.match(parts.hostname or "")) and parts.port in (None, 443)


def _default_fetch(url: str) -> bytes:
    response = requests.get(url, timeout=5)
    response.raise_for_status()
    return response.content


CERT_FETCHER = _default_fetch
_cache: dict[str, object] = {}
_cache_lock = threading.Lock()


def public_key_for(cert_url: str):
    if not is_sns_url(cert_url):
        raise PayloadError("bad_signature", "SigningCertURL must be https://sns.<region>.amazonaws.com/...")
    with _cache_lock:
        key = _cache.get(cert_url)
    if key is not None:
        return key
    try:
        pem = CERT_FETCHER(cert_url)
        cert = x509.load_pem_x509_certificate(pem)
    except Exception as exc:  # noqa: BLE001 - any failure means we cannot verify
        raise PayloadError("bad_signature", f"the signing certificate could not be fetched or read: {exc.__class__.__name__}") from exc
    key = cert.public_key()
    with _cache_lock:
        if len(_cache) > 50:
            _cache.clear()
        _cache[cert_url] = key
    return key


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()


def string_to_sign(message: dict) -> bytes:
    lines = []
    for name in _FIELDS[message["Type"]]:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
    return "".join(lines).encode()


def check_envelope(message) -> dict:
    if not isinstance(message, dict):
        raise PayloadError("wrong_type", "the body must be a JSON object")
    kind = message.get("Type")
    if kind not in TYPES:
        raise PayloadError("unknown_type", f"Type must be one of {', '.join(TYPES)}")
    for name in _REQUIRED[kind]:
        if name not in message:
            raise PayloadError("missing_field", f"{name} is required")
        if not isinstance(message[name], str):
            raise PayloadError("wrong_type", f"{name} must be a string")
    return message


def check_topic(message: dict) -> None:
    allowed = settings.SNS_ALLOWED_TOPIC_ARNS
    if message["TopicArn"] not in allowed:
        raise PayloadError("unknown_topic", f"topic {message['TopicArn']} is not in SNS_ALLOWED_TOPIC_ARNS")


def verify_signature(message: dict) -> None:
    version = message.get("SignatureVersion")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)  # noqa: S303 - SNS v1 is SHA1 by definition
    if algorithm is None:
        raise PayloadError("bad_signature", f"SignatureVersion {version!r} is not supported (1 or 2)")
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (ValueError, TypeError) as exc:
        raise PayloadError("bad_signature", "Signature is not base64") from exc
    key = public_key_for(message["SigningCertURL"])
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise PayloadError("bad_signature", "the message signature does not verify") from exc


def confirm_subscription(url: str) -> None:
    """Visit SubscribeURL (only an SNS host) to confirm the subscription."""
    if not is_sns_url(url):
        raise PayloadError("bad_subscribe_url", "SubscribeURL must be https://sns.<region>.amazonaws.com/...")
    SUBSCRIBE_FETCHER(url)


SUBSCRIBE_FETCHER = _default_fetch
