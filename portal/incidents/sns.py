"""AWS SNS HTTP(S) deliveries: envelope, freshness, topic, signature (versions 1 and 2), subscription.

Every URL the portal fetches on the sender's word (SigningCertURL, SubscribeURL) goes through
`_checked_url`: the raw text is refused if it holds anything a parser could read two ways
(userinfo, a backslash, a percent-escape, a port other than 443, control characters), the result
of urllib3's parser (the one requests fetches with) must agree, and the host must be
sns.<region of the TopicArn>.amazonaws.com. The URL fetched is then rebuilt from the checked parts
and sent exactly as prepared, without redirects, within a two-second budget and a body cap.

Tests replace the transport (`SESSION`'s https:// adapter), never the checks.
"""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
import time
from collections import OrderedDict

import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.utils import timezone
from urllib3.util import parse_url

from portal.incidents.parsing import PayloadError, parse_time


class FetchRefused(Exception):
    """The answer is not one the portal takes (a redirect, a body over the cap, a rewritten URL)."""


class Unavailable(PayloadError):
    """The certificate could not be fetched for a reason that may pass (timeout, AWS 5xx, too many
    fetches at once): the sender should retry (the webhook answers 503), the message is not forged."""


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

# arn:PARTITION:sns:REGION:ACCOUNT:NAME
_TOPIC_ARN = re.compile(r"^arn:(aws|aws-cn|aws-us-gov):sns:([a-z]{2}(?:-[a-z]+)+-\d{1,2}):(\d{12}):([A-Za-z0-9_-]{1,256}(?:\.fifo)?)$")
_CERT_PATH = re.compile(r"^/SimpleNotificationService-[0-9A-Za-z]{16,64}\.pem$")
_TOKEN = re.compile(r"^[0-9A-Za-z]{16,2048}$")
_URL_SHAPE = re.compile(r"^https://([^/?#]*)([^#]*)$")

# A message signed this long ago is a replay (SNS retries within minutes with the default policy).
MAX_AGE = dt.timedelta(hours=1)
# Clocks drift; a Timestamp further ahead than this was not written by SNS.
MAX_AHEAD = dt.timedelta(minutes=15)

# Fetching: one budget for connect + read, a body cap, and at most two fetches at once per process
# so a flood of distinct certificate URLs answers 503 instead of holding every web worker.
FETCH_BUDGET_SECONDS = 2.0
CERT_MAX_BYTES = 16 * 1024
SUBSCRIBE_MAX_BYTES = 64 * 1024
CACHE_SIZE = 32
FAILED_TTL_SECONDS = 300
FETCH_SLOTS = threading.BoundedSemaphore(2)

SESSION = requests.Session()
SESSION.headers["User-Agent"] = "ftw-ops-portal-sns"
SESSION.headers["Accept-Encoding"] = "identity"  # the byte cap is on what is read, not on what it inflates to


# ---------------------------------------------------------------------------------------------- envelope


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
    for name, value in message.items():
        if isinstance(value, str) and "\x00" in value:
            raise PayloadError("bad_characters", f"{name} holds a NUL character")
    return message


def check_topic(message: dict) -> None:
    allowed = settings.SNS_ALLOWED_TOPIC_ARNS
    if message["TopicArn"] not in allowed:
        raise PayloadError("unknown_topic", f"topic {message['TopicArn']} is not in SNS_ALLOWED_TOPIC_ARNS")


def check_timestamp(message: dict, *, now: dt.datetime | None = None) -> None:
    """Refuse a replay: the signed Timestamp must be within MAX_AGE before now (and not far ahead)."""
    at = parse_time(message.get("Timestamp"))
    if at is None:
        raise PayloadError("bad_timestamp", "Timestamp is not an ISO 8601 time")
    now = now or timezone.now()
    if at < now - MAX_AGE:
        raise PayloadError("stale_timestamp", f"Timestamp {message['Timestamp']} is more than {MAX_AGE} old: a replayed message is refused")
    if at > now + MAX_AHEAD:
        raise PayloadError("bad_timestamp", f"Timestamp {message['Timestamp']} is in the future")


def sns_host(topic_arn: str) -> str:
    """sns.<region>.amazonaws.com (amazonaws.com.cn in China) for the region of the topic's ARN."""
    match = _TOPIC_ARN.match(topic_arn or "")
    if match is None:
        raise PayloadError("bad_topic_arn", "TopicArn must be arn:aws:sns:<region>:<account>:<name>")
    partition, region = match.group(1), match.group(2)
    return f"sns.{region}.amazonaws.com" + (".cn" if partition == "aws-cn" else "")


# ---------------------------------------------------------------------------------------------- URLs


def _checked_url(url, *, field: str, host: str, reason: str) -> tuple[str, str]:
    """(path, query) of a URL that is https://<host>[:443]<path>[?query] by every parser's reading,
    or PayloadError. The caller builds the URL it fetches from `host` and these parts."""

    def refuse(problem: str):
        return PayloadError(reason, f"{field} must be https://{host}/... (sns.<region>.amazonaws.com, the TopicArn's region): {problem}")

    if not isinstance(url, str) or not url:
        raise refuse("it is missing")
    if len(url) > 4096:
        raise refuse("it is too long")
    if any(ord(c) <= 0x20 or ord(c) >= 0x7F for c in url):
        raise refuse("it holds spaces, control or non-ASCII characters")
    if "\\" in url:
        raise refuse("it holds a backslash")
    if "#" in url:
        raise refuse("it holds a fragment")
    shape = _URL_SHAPE.match(url)
    if shape is None:
        raise refuse("the scheme must be https")
    authority, rest = shape.group(1), shape.group(2)
    if "@" in authority:
        raise refuse("it holds userinfo (user@host)")
    if "%" in authority:
        raise refuse("the host holds a percent-escape")
    name, colon, port = authority.partition(":")
    if colon and port != "443":
        raise refuse(f"the port must be 443, not {port or 'empty'}")
    if name.lower() != host:
        raise refuse(f"the host is {name!r}")
    path, _, query = rest.partition("?")
    if not path.startswith("/"):
        raise refuse("the path must start with /")
    # The parser requests fetches with must read the same URL.
    try:
        parsed = parse_url(url)
    except ValueError as exc:
        raise refuse("it does not parse") from exc
    if (parsed.scheme, parsed.auth, (parsed.host or "").lower(), parsed.port or 443, parsed.path or "/", parsed.query or "", parsed.fragment) != (
        "https", None, host, 443, path, query, None,
    ):
        raise refuse("parsers read it differently")
    return path, query


def cert_url(message: dict) -> str:
    """The SigningCertURL to fetch, rebuilt from its checked parts."""
    host = sns_host(message.get("TopicArn", ""))
    path, query = _checked_url(message.get("SigningCertURL"), field="SigningCertURL", host=host, reason="bad_cert_url")
    if query or not _CERT_PATH.match(path):
        raise PayloadError("bad_cert_url", f"SigningCertURL must be https://{host}/SimpleNotificationService-<id>.pem (sns.<region>.amazonaws.com)")
    return f"https://{host}{path}"


def subscribe_url(message: dict) -> str:
    """The SubscribeURL to visit, rebuilt from its checked parts: it may only confirm this message's
    topic with this message's token (Action=ConfirmSubscription&TopicArn=...&Token=...)."""
    arn = message.get("TopicArn", "")
    host = sns_host(arn)
    path, query = _checked_url(message.get("SubscribeURL"), field="SubscribeURL", host=host, reason="bad_subscribe_url")

    def refuse(problem: str):
        return PayloadError("bad_subscribe_url", f"SubscribeURL must be https://{host}/?Action=ConfirmSubscription&TopicArn=<this topic>&Token=<this token>: {problem}")

    if path != "/":
        raise refuse("the path must be /")
    params: dict[str, str] = {}
    for pair in query.split("&"):
        key, eq, value = pair.partition("=")
        if not eq or key in params or "+" in value:
            raise refuse("the query is not plain name=value pairs")
        params[key] = value
    if set(params) != {"Action", "TopicArn", "Token"}:
        raise refuse("the query must hold exactly Action, TopicArn and Token")
    if params["Action"] != "ConfirmSubscription":
        raise refuse("Action must be ConfirmSubscription")
    if params["TopicArn"] != arn:
        raise refuse("TopicArn differs from the message's")
    token = message.get("Token")
    if params["Token"] != token or not _TOKEN.match(token or ""):
        raise refuse("Token differs from the message's or is not alphanumeric")
    return f"https://{host}/?Action=ConfirmSubscription&TopicArn={arn}&Token={token}"


# ---------------------------------------------------------------------------------------------- fetching


def fetch(url: str, *, max_bytes: int) -> requests.Response:
    """GET exactly `url`: no redirects, FETCH_BUDGET_SECONDS in all, at most max_bytes of body
    (response.content holds it). Raises FetchRefused, or requests.RequestException (timeouts,
    connection errors) that may pass."""
    prepared = SESSION.prepare_request(requests.Request("GET", url))
    if prepared.url != url:
        raise FetchRefused("the URL changed when it was prepared")
    deadline = time.monotonic() + FETCH_BUDGET_SECONDS
    response = SESSION.send(prepared, allow_redirects=False, stream=True, timeout=(1.0, 1.0))
    try:
        if response.is_redirect or response.is_permanent_redirect:
            raise FetchRefused(f"answered {response.status_code} with a redirect, which is not followed")
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > max_bytes:
            raise FetchRefused(f"the body is larger than {max_bytes} bytes")
        body = bytearray()
        # read1: at most one socket read per call (each bounded by the read timeout), so the
        # budget is checked between reads, not after a buffer fills.
        while chunk := response.raw.read1(4096):
            body += chunk
            if len(body) > max_bytes:
                raise FetchRefused(f"the body is larger than {max_bytes} bytes")
            if time.monotonic() > deadline:
                raise requests.exceptions.ReadTimeout(f"the body took longer than {FETCH_BUDGET_SECONDS} s", response=response)
        response._content = bytes(body)
    finally:
        response.close()
    return response


_cache: OrderedDict[str, object] = OrderedDict()
_failed: OrderedDict[str, tuple[float, str]] = OrderedDict()
_cache_lock = threading.Lock()


def cache_sizes() -> tuple[int, int]:
    """(certificates kept, refusals remembered): both at most CACHE_SIZE."""
    with _cache_lock:
        return len(_cache), len(_failed)


def clear_cache() -> None:
    with _cache_lock:
        _cache.clear()
        _failed.clear()


def _remember(store: OrderedDict, url: str, value) -> None:
    with _cache_lock:
        store[url] = value
        store.move_to_end(url)
        while len(store) > CACHE_SIZE:
            store.popitem(last=False)


def _check_certificate(cert: x509.Certificate, host: str) -> None:
    """The certificate must be SNS's: subject CN or a DNS name sns.amazonaws.com (what AWS signs
    with) or the regional host, and valid now. TLS to the regional host vouches for the bytes."""
    suffix = ".cn" if host.endswith(".cn") else ""
    expected = {f"sns.amazonaws.com{suffix}", host}
    names = {a.value for a in cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)}
    try:
        names |= set(cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    if not names & expected:
        raise PayloadError("bad_certificate", f"the signing certificate is for {sorted(map(str, names))}, not {sorted(expected)}")
    now = timezone.now()
    if not (cert.not_valid_before_utc <= now <= cert.not_valid_after_utc):
        raise PayloadError("bad_certificate", "the signing certificate is not valid now")


def public_key_for(message: dict):
    url = cert_url(message)
    host = sns_host(message["TopicArn"])
    with _cache_lock:
        key = _cache.get(url)
        failed = _failed.get(url)
    if key is not None:
        return key
    if failed is not None and failed[0] > time.monotonic():
        raise PayloadError("bad_certificate", failed[1])
    if not FETCH_SLOTS.acquire(timeout=0.2):
        raise Unavailable("busy", "too many signing certificates are being fetched at once; retry")
    try:
        response = fetch(url, max_bytes=CERT_MAX_BYTES)
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise Unavailable("unavailable", f"the signing certificate could not be fetched ({exc.__class__.__name__}); retry") from exc
    except (FetchRefused, requests.RequestException) as exc:
        detail = f"the signing certificate could not be fetched: {exc}"
        _remember(_failed, url, (time.monotonic() + FAILED_TTL_SECONDS, detail))
        raise PayloadError("bad_certificate", detail) from exc
    finally:
        FETCH_SLOTS.release()
    if response.status_code >= 500:
        raise Unavailable("unavailable", f"{host} answered {response.status_code} for the signing certificate; retry")
    try:
        if response.status_code != 200:
            raise PayloadError("bad_certificate", f"{host} answered {response.status_code} for the signing certificate")
        try:
            cert = x509.load_pem_x509_certificate(response.content)
        except ValueError as exc:
            raise PayloadError("bad_certificate", "the signing certificate is not a PEM certificate") from exc
        _check_certificate(cert, host)
    except PayloadError as exc:
        _remember(_failed, url, (time.monotonic() + FAILED_TTL_SECONDS, exc.detail))
        raise
    key = cert.public_key()
    _remember(_cache, url, key)
    return key


# ---------------------------------------------------------------------------------------------- signature


def string_to_sign(message: dict) -> bytes:
    lines = []
    for name in _FIELDS[message["Type"]]:
        if name in message and message[name] is not None:
            lines.append(f"{name}\n{message[name]}\n")
    return "".join(lines).encode()


def check_urls(message: dict) -> None:
    """Every URL of the message is checked before anything is fetched."""
    cert_url(message)
    if message["Type"] in ("SubscriptionConfirmation", "UnsubscribeConfirmation"):
        subscribe_url(message)


def verify_signature(message: dict) -> None:
    version = message.get("SignatureVersion")
    algorithm = {"1": hashes.SHA1(), "2": hashes.SHA256()}.get(version)  # noqa: S303 - SNS v1 is SHA1 by definition
    if algorithm is None:
        raise PayloadError("bad_signature", f"SignatureVersion {version!r} is not supported (1 or 2)")
    try:
        signature = base64.b64decode(message["Signature"], validate=True)
    except (ValueError, TypeError) as exc:
        raise PayloadError("bad_signature", "Signature is not base64") from exc
    key = public_key_for(message)
    try:
        key.verify(signature, string_to_sign(message), padding.PKCS1v15(), algorithm)
    except InvalidSignature as exc:
        raise PayloadError("bad_signature", "the message signature does not verify") from exc


def verify(message: dict) -> None:
    """All the checks of an SNS delivery, cheapest first; only the last one may go to the network."""
    check_topic(message)
    check_timestamp(message)
    check_urls(message)
    verify_signature(message)


def confirm_subscription(message: dict) -> None:
    """Visit the message's SubscribeURL (checked and rebuilt again: the stored payload is input too).
    A transient failure raises requests.RequestException for the task to retry."""
    url = subscribe_url(message)
    try:
        response = fetch(url, max_bytes=SUBSCRIBE_MAX_BYTES)
    except FetchRefused as exc:
        raise PayloadError("subscribe_failed", f"SubscribeURL {exc}") from exc
    if response.status_code >= 500:
        raise requests.HTTPError(f"SubscribeURL answered {response.status_code}", response=response)
    if response.status_code != 200:
        raise PayloadError("subscribe_failed", f"SubscribeURL answered {response.status_code}")
