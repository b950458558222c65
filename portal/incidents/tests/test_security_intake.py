"""Issue 14, items 1 and 8: forged SNS messages and hostile webhook bodies.

The wire is watched where requests meets the network (HTTPAdapter.send, the adapter every
requests session sends through) and at name resolution (socket.getaddrinfo), so "nothing left the
portal" is asserted on whatever code path the portal takes, not on one function we expect it to call.
"""

from __future__ import annotations

import copy
import datetime as dt
import io
import json
import socket

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from portal.incidents import sns
from portal.incidents.models import Alert, AlertDelivery, Incident, RejectedDelivery
from portal.incidents.tests.conftest import CERT_URL, TOPIC, Signer, load

pytestmark = pytest.mark.django_db(transaction=True)

AM = "/api/v1/alerts/alertmanager"
SNS = "/api/v1/alerts/sns"
CERT_NAME = "SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem"


def make_cert(common_name: str = "sns.amazonaws.com", *, days: int = 30):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(days=2))
        .not_valid_after(now + dt.timedelta(days=days)).sign(key, hashes.SHA256())
    )
    return key, cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def attacker():
    """An attacker's own key and a certificate that claims to be SNS's."""
    key, pem = make_cert("sns.amazonaws.com")
    return Signer(key), pem


class Wire:
    """Every request any requests session tries to send, answered from `routes` (others: 404)."""

    def __init__(self):
        self.sent: list[str] = []
        self.resolved: list[str] = []
        self.routes: dict[str, tuple[int, bytes, dict]] = {}


@pytest.fixture
def wire(monkeypatch, settings):
    w = Wire()
    real_getaddrinfo = socket.getaddrinfo

    def send(adapter, request, **kwargs):
        w.sent.append(request.url)
        status, body, headers = w.routes.get(request.url, (404, b"not found", {}))
        response = requests.Response()
        response.status_code, response.url, response.request = status, request.url, request
        response.headers.update(headers)
        response.raw = io.BytesIO(body)
        return response

    def getaddrinfo(host, *args, **kwargs):
        w.resolved.append(host if isinstance(host, str) else str(host))
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    settings.SNS_ALLOWED_TOPIC_ARNS = [TOPIC]
    sns.clear_cache()
    yield w
    sns.clear_cache()


TRICK_URLS = [
    # urllib.parse reads the host after the "@", urllib3 (which requests fetches with) stops at "\".
    ("backslash userinfo", f"https://evil.example\\@sns.us-east-1.amazonaws.com/{CERT_NAME}", "evil.example"),
    ("userinfo", f"https://sns.us-east-1.amazonaws.com@evil.example/{CERT_NAME}", "evil.example"),
    ("percent-escaped dot", f"https://sns.us-east-1.amazonaws.com%2eevil.example/{CERT_NAME}", "evil.example"),
    ("backslash host", f"https://evil.example\\.sns.us-east-1.amazonaws.com/{CERT_NAME}", "evil.example"),
    ("other port", f"https://sns.us-east-1.amazonaws.com:8443/{CERT_NAME}", "sns.us-east-1.amazonaws.com:8443"),
    ("plain http", f"http://sns.us-east-1.amazonaws.com/{CERT_NAME}", "sns.us-east-1.amazonaws.com"),
    ("another region than the topic's", f"https://sns.eu-west-1.amazonaws.com/{CERT_NAME}", "sns.eu-west-1.amazonaws.com"),
    ("not a certificate path", "https://sns.us-east-1.amazonaws.com/?Action=Redirect&to=evil", "sns.us-east-1.amazonaws.com"),
    ("dot segments", f"https://sns.us-east-1.amazonaws.com/x/../{CERT_NAME}", "sns.us-east-1.amazonaws.com"),
    ("tab in host", f"https://sns.us-east-1.amazonaws.com\t.evil.example/{CERT_NAME}", "evil.example"),
]


@pytest.mark.parametrize("label,url,served_at", TRICK_URLS, ids=[t[0] for t in TRICK_URLS])
def test_forged_alarm_with_a_tricky_cert_url_opens_nothing_and_sends_no_request(api_client, wire, attacker, label, url, served_at):
    signer, pem = attacker
    # The attacker serves their certificate wherever the URL could lead.
    for u in {url, url.replace("\\", "/"), f"https://evil.example/{CERT_NAME}", f"https://evil.example/%5C@sns.us-east-1.amazonaws.com/{CERT_NAME}",
              f"https://evil.example/%5C.sns.us-east-1.amazonaws.com/{CERT_NAME}"}:
        wire.routes[u] = (200, pem, {})
    forged = signer.sign(dict(load("sns/cloudwatch-alarm.json"), SigningCertURL=url))
    r = api_client.post(SNS, forged)
    assert r.status_code == 403, r.content
    assert r.json()["error"] == "bad_cert_url"
    assert wire.sent == [] and wire.resolved == []
    assert Incident.objects.count() == 0 and AlertDelivery.objects.count() == 0
    assert RejectedDelivery.objects.get().reason == "bad_cert_url"


def test_forged_ok_cannot_resolve_a_real_incident(api_client, wire, attacker, sns_keypair):
    """The real SNS key opens an incident; the attacker's OK, with a cert URL that tricks the parser, resolves nothing."""
    key, pem = sns_keypair
    wire.routes[CERT_URL] = (200, pem, {})
    real = Signer(key)
    assert api_client.post(SNS, real.sign(load("sns/cloudwatch-alarm.json"))).status_code == 200
    inc = Incident.objects.get()
    assert inc.status == "triggered" and wire.sent == [CERT_URL]

    signer, attacker_pem = attacker
    trick = f"https://evil.example\\@sns.us-east-1.amazonaws.com/{CERT_NAME}"
    wire.routes[f"https://evil.example/%5C@sns.us-east-1.amazonaws.com/{CERT_NAME}"] = (200, attacker_pem, {})
    r = api_client.post(SNS, signer.sign(dict(load("sns/cloudwatch-ok.json"), SigningCertURL=trick)))
    assert r.status_code == 403 and r.json()["error"] == "bad_cert_url"
    inc.refresh_from_db()
    assert inc.status == "triggered" and inc.resolved_at is None
    assert wire.sent == [CERT_URL]  # the first, genuine fetch only


def test_replayed_message_older_than_an_hour_is_refused_before_any_fetch(api_client, sns_signer):
    old = sns_signer.sign(load("sns/cloudwatch-alarm.json"), fresh=False)  # signed 2026-11-27
    r = api_client.post(SNS, old)
    assert r.status_code == 403 and r.json()["error"] == "stale_timestamp"
    ahead = copy.deepcopy(load("sns/cloudwatch-alarm.json"))
    ahead["Timestamp"] = (dt.datetime.now(dt.UTC) + dt.timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    r = api_client.post(SNS, sns_signer.sign(ahead, fresh=False))
    assert r.status_code == 403 and r.json()["error"] == "bad_timestamp"
    just_in_time = copy.deepcopy(load("sns/cloudwatch-alarm.json"))
    just_in_time["Timestamp"] = (dt.datetime.now(dt.UTC) - dt.timedelta(minutes=59)).strftime("%Y-%m-%dT%H:%M:%S.000Z")
    assert sns_signer.aws.sent == []
    assert api_client.post(SNS, sns_signer.sign(just_in_time, fresh=False)).status_code == 200
    assert Incident.objects.count() == 1


@pytest.mark.parametrize("common_name", ["evil.example", "sns.amazonaws.com.evil.example", "s3.amazonaws.com"])
def test_certificate_with_another_subject_is_refused(api_client, fake_aws, settings, common_name):
    key, pem = make_cert(common_name)
    fake_aws.routes[CERT_URL] = (200, pem, {})
    settings.SNS_ALLOWED_TOPIC_ARNS = [TOPIC]
    r = api_client.post(SNS, Signer(key).sign(load("sns/cloudwatch-alarm.json")))
    assert r.status_code == 403 and r.json()["error"] == "bad_certificate"
    assert common_name in r.json()["detail"]
    assert Incident.objects.count() == 0
    # The refusal is remembered for a while: a flood of the same message does not refetch.
    assert api_client.post(SNS, Signer(key).sign(load("sns/cloudwatch-alarm.json"))).status_code == 403
    assert fake_aws.cert_fetches == [CERT_URL]


def test_expired_certificate_is_refused(api_client, fake_aws, settings):
    key, pem = make_cert(days=-1)  # expired yesterday
    fake_aws.routes[CERT_URL] = (200, pem, {})
    settings.SNS_ALLOWED_TOPIC_ARNS = [TOPIC]
    r = api_client.post(SNS, Signer(key).sign(load("sns/cloudwatch-alarm.json")))
    assert r.status_code == 403 and r.json()["error"] == "bad_certificate"


def test_certificate_fetch_is_capped_and_never_follows_redirects(api_client, sns_signer, sns_keypair):
    aws = sns_signer.aws
    aws.routes[CERT_URL] = (302, b"", {"Location": "http://169.254.169.254/latest/meta-data/"})
    r = api_client.post(SNS, sns_signer.sign(load("sns/cloudwatch-alarm.json")))
    assert r.status_code == 403 and r.json()["error"] == "bad_certificate" and "redirect" in r.json()["detail"]
    assert aws.urls == [CERT_URL]
    kwargs = aws.kwargs[0]
    connect, read = kwargs["timeout"]
    assert connect + read <= 2.0 and kwargs["stream"] is True
    assert aws.sent[0].url == CERT_URL and aws.sent[0].headers.get("Authorization") is None

    sns.clear_cache()
    aws.routes[CERT_URL] = (200, b"-" * (sns.CERT_MAX_BYTES + 1), {})
    r = api_client.post(SNS, sns_signer.sign(load("sns/cloudwatch-alarm.json")))
    assert r.status_code == 403 and "larger than" in r.json()["detail"]
    assert Incident.objects.count() == 0


def test_unreachable_certificate_answers_503_so_sns_retries(api_client, sns_signer, monkeypatch):
    def timeout(request, **kwargs):
        raise requests.ConnectTimeout("connect timed out")

    monkeypatch.setattr(sns_signer.aws, "send", timeout)
    r = api_client.post(SNS, sns_signer.sign(load("sns/cloudwatch-alarm.json")))
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    assert AlertDelivery.objects.count() == 0


def test_flood_of_distinct_cert_urls_keeps_the_cache_bounded(api_client, sns_signer):
    for i in range(sns.CACHE_SIZE + 8):
        url = f"https://sns.us-east-1.amazonaws.com/SimpleNotificationService-{i:032x}.pem"
        message = sns_signer.sign(dict(load("sns/cloudwatch-alarm.json"), SigningCertURL=url, MessageId=f"m-{i}"))
        assert api_client.post(SNS, message).status_code == 403  # AWS answers 404 for made-up names
    assert len(sns_signer.aws.cert_fetches) == sns.CACHE_SIZE + 8
    assert sns.cache_sizes() == (0, sns.CACHE_SIZE)


SUBSCRIBE = load("sns/subscription-confirmation.json")["SubscribeURL"]
BAD_SUBSCRIBE_URLS = [
    ("backslash userinfo", SUBSCRIBE.replace("https://sns.us-east-1.amazonaws.com/", "https://evil.example\\@sns.us-east-1.amazonaws.com/")),
    ("userinfo", SUBSCRIBE.replace("sns.us-east-1.amazonaws.com/", "sns.us-east-1.amazonaws.com@evil.example/")),
    ("other host", SUBSCRIBE.replace("sns.us-east-1.amazonaws.com", "sns.us-east-1.amazonaws.com.evil.example")),
    ("other port", SUBSCRIBE.replace("amazonaws.com/", "amazonaws.com:444/")),
    ("http", SUBSCRIBE.replace("https://", "http://")),
    ("other topic", SUBSCRIBE.replace("ftw-alarms&", "someone-elses-topic&")),
    ("other action", SUBSCRIBE.replace("Action=ConfirmSubscription", "Action=Unsubscribe")),
    ("extra parameter", SUBSCRIBE + "&Redirect=http://169.254.169.254/"),
    ("percent-escapes", SUBSCRIBE.replace("arn:aws", "arn%3Aaws")),
]


@pytest.mark.parametrize("label,url", BAD_SUBSCRIBE_URLS, ids=[b[0] for b in BAD_SUBSCRIBE_URLS])
def test_subscribe_url_is_checked_like_the_cert_url(client, sns_signer, label, url):
    message = sns_signer.sign(dict(load("sns/subscription-confirmation.json"), SubscribeURL=url))
    r = client.post(SNS, data=json.dumps(message), content_type="text/plain; charset=UTF-8")
    assert r.status_code == 403, r.content
    assert r.json()["error"] == "bad_subscribe_url"
    assert sns_signer.aws.sent == []  # neither the certificate nor the SubscribeURL
    assert AlertDelivery.objects.count() == 0


def test_stored_subscription_is_checked_again_before_it_is_visited(sns_signer, wire):
    """A delivery stored before these checks (or written by hand) is input too: the task re-checks it."""
    from portal.incidents import ingest

    bad = dict(load("sns/subscription-confirmation.json"), SubscribeURL=BAD_SUBSCRIBE_URLS[0][1])
    delivery, _ = ingest.delivery_store(source="sns", payload=bad, dedup_key="stored-1")
    delivery.refresh_from_db()
    assert delivery.status == "rejected" and delivery.error.startswith("bad_subscribe_url")
    assert wire.sent == [] and sns_signer.aws.sent == []


def test_subscribe_redirect_is_not_followed(client, sns_signer, subscribe_calls):
    sns_signer.aws.routes[SUBSCRIBE] = (301, b"", {"Location": "http://169.254.169.254/"})
    message = sns_signer.sign(load("sns/subscription-confirmation.json"))
    r = client.post(SNS, data=json.dumps(message), content_type="text/plain; charset=UTF-8")
    assert r.status_code == 200
    assert subscribe_calls == [SUBSCRIBE]
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "rejected" and "redirect" in delivery.error


# ---------------------------------------------------------------------------------------------- item 8


@pytest.fixture
def alerts_token(make_token):
    return make_token("alerts:write")


def test_batch_with_one_poisoned_alert_stores_the_others(api_client, alerts_token):
    batch = load("alertmanager/batch-100.json")
    batch["alerts"][7]["labels"]["instance"] = "10.0.0.17:8000\x00; DROP TABLE"
    batch["alerts"][8]["labels"]["instance"] = "10.0.0.18:8000\nFAKE LOG LINE"
    batch["alerts"][9]["annotations"]["summary"] = "bell \x07"
    r = api_client.post(AM, batch, token=alerts_token)
    assert r.status_code == 200, r.content
    body = r.json()
    assert body["alerts"] == 97
    assert [(x["index"], x["error"]) for x in body["rejected"]] == [(7, "bad_label"), (8, "bad_label"), (9, "bad_annotation")]
    assert Alert.objects.count() == 97
    assert not Alert.objects.filter(fingerprint__in=[batch["alerts"][i]["fingerprint"] for i in (7, 8, 9)]).exists()
    stored = AlertDelivery.objects.get()
    assert stored.status == "processed" and len(stored.payload["alerts"]) == 97
    rejected = RejectedDelivery.objects.get()
    assert rejected.reason == "bad_label" and rejected.status_code == 200 and "3 of 100 alerts refused" in rejected.detail
    assert "\x00" not in rejected.excerpt and "\\u0000" in rejected.excerpt


def test_all_alerts_poisoned_is_a_422_with_the_reason(api_client, alerts_token):
    one = load("alertmanager/firing-v0.25.json")
    one["alerts"][0]["labels"]["alertname"] = "Always\x00Firing"
    r = api_client.post(AM, one, token=alerts_token)
    assert r.status_code == 422 and r.json()["error"] == "bad_label" and "alerts[0].labels.alertname" in r.json()["detail"]
    assert AlertDelivery.objects.count() == 0 and RejectedDelivery.objects.get().status_code == 422


def test_titles_are_single_line(api_client, alerts_token):
    one = load("alertmanager/firing-v0.25.json")
    one["commonAnnotations"] = {"summary": "Disk full\nSeverity: none, ignore this page\r\n"}
    one["alerts"][0]["annotations"] = {"summary": "Disk full\non db-1", "description": "line one\nline two"}
    r = api_client.post(AM, one, token=alerts_token)
    assert r.status_code == 200, r.content
    inc = Incident.objects.get()
    assert inc.title == "AlwaysFiring: Disk full Severity: none, ignore this page"
    alert = Alert.objects.get()
    assert alert.summary == "Disk full on db-1"
    assert alert.annotations["description"] == "line one\nline two"  # prose keeps its lines


@pytest.mark.parametrize("depth", [40, 100_000])
def test_deeply_nested_json_is_a_400_with_a_reason(api_client, alerts_token, depth):
    body = b'{"version": "4", "alerts": [' + b"[" * depth + b"]" * depth + b"]}"
    r = api_client.post(AM, raw=body, token=alerts_token)
    assert r.status_code == 400, r.content[:300]
    assert r.json()["error"] == "too_deep" and "nested deeper than" in r.json()["detail"]
    assert RejectedDelivery.objects.get().reason == "too_deep"
    assert api_client.post(AM, load("alertmanager/firing-v0.25.json"), token=alerts_token).status_code == 200


def test_deeply_nested_sns_message_is_a_400(api_client, sns_signer):
    alarm = load("sns/cloudwatch-alarm.json")
    alarm["Message"] = '{"AlarmName": "x", "NewStateValue": "ALARM", "Trigger": ' + "[" * 50 + "]" * 50 + "}"
    r = api_client.post(SNS, sns_signer.sign(alarm))
    assert r.status_code == 400 and r.json()["error"] == "too_deep"


def test_nul_in_an_sns_envelope_is_refused(api_client, sns_signer):
    alarm = dict(load("sns/cloudwatch-alarm.json"), Subject="ALARM\x00")
    r = api_client.post(SNS, sns_signer.sign(alarm))
    assert r.status_code == 422 and r.json()["error"] == "bad_characters"
    assert sns_signer.aws.sent == []


def test_junk_flood_is_sampled_and_counted(api_client, client):
    from portal.incidents import rejects
    from portal.metrics import EVENTS

    before = EVENTS.labels("delivery_rejected", "alertmanager")._value.get()
    floods = rejects.REJECT_SAMPLE_FIRST + rejects.REJECT_SAMPLE_EVERY + 30
    for _ in range(floods):
        assert api_client.post(AM, raw=b"junk", token=None).status_code == 401
    rows = RejectedDelivery.objects.filter(reason="unauthorized")
    assert rows.count() == rejects.REJECT_SAMPLE_FIRST + 1
    assert sum(rows.values_list("weight", flat=True)) == rejects.REJECT_SAMPLE_FIRST + rejects.REJECT_SAMPLE_EVERY
    assert EVENTS.labels("delivery_rejected", "alertmanager")._value.get() - before == floods


def test_rejections_are_kept_for_a_bounded_time(db):
    from portal.incidents import rejects, tasks

    old = RejectedDelivery.objects.create(source="alertmanager", reason="malformed_json")
    RejectedDelivery.objects.filter(pk=old.pk).update(received_at=dt.datetime.now(dt.UTC) - rejects.REJECT_RETENTION - dt.timedelta(minutes=1))
    fresh = RejectedDelivery.objects.create(source="alertmanager", reason="malformed_json")
    assert tasks.prune_rejected_deliveries() == 1
    assert list(RejectedDelivery.objects.values_list("pk", flat=True)) == [fresh.pk]


def test_unknown_http_method_adds_no_metrics_label(client):
    client.generic("PROPFIND", "/api/v1/incidents")
    client.generic("X" * 40, "/healthz")
    metrics = client.get("/metrics").content.decode()
    assert 'method="PROPFIND"' not in metrics and 'method="' + "X" * 40 + '"' not in metrics
    assert 'portal_http_requests_total{method="other"' in metrics


def test_rejected_page_shows_what_a_sampled_row_stands_for(client, lead):
    RejectedDelivery.objects.create(source="alertmanager", reason="unauthorized", status_code=401, weight=100)
    client.force_login(lead)
    page = client.get("/incidents/rejected/").content.decode()
    assert "&times;100" in page and "stands for 100 rejections" in page


def test_a_trickling_server_is_cut_off_at_the_fetch_budget():
    """A real socket on 127.0.0.1 sending one byte every 0.3 s: each read is within the read
    timeout, but the whole fetch stops at the budget instead of holding the worker."""
    import threading
    import time

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)

    def trickle():
        conn, _ = server.accept()
        conn.recv(4096)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 4000\r\n\r\n")
        try:
            for _ in range(4000):
                conn.sendall(b"x")
                time.sleep(0.3)
        except OSError:
            pass
        finally:
            conn.close()

    threading.Thread(target=trickle, daemon=True).start()
    started = time.monotonic()
    with pytest.raises(requests.Timeout):
        sns.fetch(f"http://127.0.0.1:{server.getsockname()[1]}/cert.pem", max_bytes=sns.CERT_MAX_BYTES)
    assert time.monotonic() - started < sns.FETCH_BUDGET_SECONDS + 1.0
    server.close()


def test_fetches_beyond_the_concurrency_cap_answer_503_at_once(api_client, sns_signer):
    import time

    held = 0
    while sns.FETCH_SLOTS.acquire(blocking=False):  # every slot busy, as under a flood
        held += 1
    try:
        started = time.monotonic()
        r = api_client.post(SNS, sns_signer.sign(load("sns/cloudwatch-alarm.json")))
        assert r.status_code == 503 and r.json()["error"] == "busy"
        assert time.monotonic() - started < 1.0 and sns_signer.aws.sent == []
    finally:
        for _ in range(held):
            sns.FETCH_SLOTS.release()
    assert api_client.post(SNS, sns_signer.sign(load("sns/cloudwatch-alarm.json"))).status_code == 200
