import json

import pytest

from portal.incidents.models import Alert, AlertDelivery, Incident, RejectedDelivery, TimelineEntry
from portal.incidents.tests.conftest import TOPIC, load

# Processing runs on commit (as in production), so these tests commit for real.
pytestmark = pytest.mark.django_db(transaction=True)

AM = "/api/v1/alerts/alertmanager"
SNS = "/api/v1/alerts/sns"


@pytest.fixture
def alerts_token(make_token):
    return make_token("alerts:write")


def post_am(api_client, payload, token, **kw):
    return api_client.post(AM, payload, token=token, **kw)


def test_firing_then_resolved_fixture(api_client, alerts_token, db):
    r = post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token)
    assert r.status_code == 200, r.content
    assert r.json()["status"] == "accepted" and r.json()["alerts"] == 1
    inc = Incident.objects.get()
    assert inc.status == "triggered" and inc.severity == "critical" and inc.service == "portal"
    assert inc.grouping_key == 'alertmanager:{}:{alertname="AlwaysFiring"}'
    alert = Alert.objects.get()
    assert alert.fingerprint == "c78b9f8fd226fa57" and alert.generator_url.startswith("http://vm:19090/graph")
    assert alert.ends_at is None  # Go's zero time means "not ended"
    assert AlertDelivery.objects.get().status == "processed"

    r = post_am(api_client, load("alertmanager/resolved-v0.25.json"), alerts_token)
    assert r.status_code == 200
    inc.refresh_from_db()
    assert inc.status == "resolved" and inc.resolve_reason == "all alerts resolved"
    assert list(alert.events.values_list("effect", flat=True)) == ["fired", "resolved"]


def test_same_payload_three_times_is_one_incident(api_client, alerts_token, db):
    for _ in range(3):
        assert post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token).status_code == 200
    assert Incident.objects.count() == 1 and Alert.objects.count() == 1
    assert AlertDelivery.objects.filter(status="processed").count() == 3
    assert TimelineEntry.objects.filter(kind="alert_firing").count() == 1


def test_resolved_arriving_before_its_firing_twin(api_client, alerts_token, db):
    post_am(api_client, load("alertmanager/resolved-v0.25.json"), alerts_token)
    post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token)
    assert Incident.objects.count() == 0
    alert = Alert.objects.get()
    assert alert.status == "resolved"
    assert list(alert.events.values_list("effect", flat=True)) == ["resolved_first", "stale"]


def test_grouped_batch_of_100(api_client, alerts_token, db):
    r = post_am(api_client, load("alertmanager/batch-100.json"), alerts_token)
    assert r.status_code == 200 and r.json()["alerts"] == 100
    inc = Incident.objects.get()
    assert inc.alerts.count() == 100 and Alert.objects.count() == 100
    assert inc.severity == "critical"  # one critical among 99 warnings: the highest wins
    assert inc.title == "HighErrorRate"  # no common summary: the group name, not one instance's summary


def test_truncated_alerts_are_noted(api_client, alerts_token, db):
    r = post_am(api_client, load("alertmanager/truncated.json"), alerts_token)
    assert r.status_code == 200
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "processed" and "90 alerts truncated" in delivery.error
    assert Incident.objects.get().alerts.count() == 10


BAD = [
    ("malformed", b'{"alerts": [', 400, "malformed_json"),
    ("missing alerts", json.dumps({"version": "4", "groupKey": "k"}).encode(), 422, "missing_field"),
    ("alerts not a list", json.dumps({"version": "4", "alerts": "x"}).encode(), 422, "wrong_type"),
    ("label not a string", json.dumps({"version": "4", "alerts": [{"status": "firing", "labels": {"a": 1}}]}).encode(), 422, "wrong_type"),
    ("bad status", json.dumps({"version": "4", "alerts": [{"status": "burning", "labels": {}}]}).encode(), 422, "wrong_type"),
    ("not an object", b"[1, 2]", 422, "wrong_type"),
]


@pytest.mark.parametrize("label,body,status,reason", BAD, ids=[b[0] for b in BAD])
def test_bad_alertmanager_input_is_refused_and_recorded(api_client, alerts_token, db, label, body, status, reason):
    r = api_client.post(AM, raw=body, token=alerts_token)
    assert r.status_code == status, r.content
    assert r.json()["error"] == reason and r.json()["detail"]
    assert AlertDelivery.objects.count() == 0 and Alert.objects.count() == 0
    rejected = RejectedDelivery.objects.get()
    assert rejected.reason == reason and rejected.status_code == status
    # The next valid payload still works.
    assert post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token).status_code == 200
    assert Incident.objects.count() == 1


def test_wrong_token_and_wrong_scope(api_client, make_token, db, client):
    assert post_am(api_client, load("alertmanager/firing-v0.25.json"), "ftw_not-a-token").status_code == 401
    assert post_am(api_client, load("alertmanager/firing-v0.25.json"), None).status_code == 401
    r = post_am(api_client, load("alertmanager/firing-v0.25.json"), make_token("read"))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    assert Alert.objects.count() == 0 and AlertDelivery.objects.count() == 0
    assert list(RejectedDelivery.objects.values_list("reason", flat=True).order_by("id")) == ["unauthorized", "unauthorized", "forbidden"]
    metrics = client.get("/metrics").content.decode()
    assert 'portal_events_total{event="delivery_rejected",source="alertmanager"}' in metrics


def test_five_mb_accepted_six_mb_refused(api_client, alerts_token, db):
    big = load("alertmanager/firing-v0.25.json")
    big["alerts"][0]["annotations"]["description"] = "x" * (5 * 1024 * 1024 - 2000)
    r = post_am(api_client, big, alerts_token)
    assert r.status_code == 200, r.content[:300]
    huge = load("alertmanager/firing-v0.25.json")
    huge["alerts"][0]["annotations"]["description"] = "x" * (6 * 1024 * 1024)
    r = post_am(api_client, huge, alerts_token)
    assert r.status_code == 413 and r.json()["error"] == "too_large"
    assert AlertDelivery.objects.count() == 1
    assert RejectedDelivery.objects.get().reason == "too_large"


def test_database_down_answers_503(api_client, alerts_token, db, monkeypatch):
    from django.db import OperationalError

    from portal.incidents import ingest

    def boom(**kw):
        raise OperationalError("connection refused")

    monkeypatch.setattr(ingest, "delivery_store", boom)
    r = post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token)
    assert r.status_code == 503 and r.json()["error"] == "unavailable"


def test_dead_broker_loses_nothing_and_the_sweep_processes(api_client, alerts_token, db, monkeypatch):
    from datetime import timedelta

    from portal.incidents import tasks

    def dead(*a, **kw):
        raise ConnectionError("broker down")

    monkeypatch.setattr(tasks.process_delivery, "apply_async", dead)
    r = post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token)
    assert r.status_code == 200
    delivery = AlertDelivery.objects.get()
    assert delivery.status == "pending" and Incident.objects.count() == 0
    monkeypatch.undo()
    AlertDelivery.objects.update(received_at=delivery.received_at - timedelta(minutes=1))
    assert tasks.sweep_deliveries() == 1
    assert AlertDelivery.objects.get().status == "processed" and Incident.objects.count() == 1


# ---------------------------------------------------------------------------------------------- SNS


def test_sns_subscription_confirmation(client, db, sns_signer, subscribe_calls):
    message = sns_signer.sign(load("sns/subscription-confirmation.json"))
    r = client.post(SNS, data=json.dumps(message), content_type="text/plain; charset=UTF-8",
                    headers={"x-amz-sns-message-type": "SubscriptionConfirmation"})
    assert r.status_code == 200, r.content
    assert subscribe_calls == [message["SubscribeURL"]]
    assert sns_signer.fetched == [message["SigningCertURL"]]


@pytest.mark.parametrize("version", ["1", "2"])
def test_sns_cloudwatch_alarm_then_ok(api_client, db, sns_signer, version):
    alarm = sns_signer.sign(load("sns/cloudwatch-alarm.json"), version)
    r = api_client.post(SNS, alarm)
    assert r.status_code == 200, r.content
    inc = Incident.objects.get()
    assert inc.status == "triggered" and inc.severity == "critical" and inc.grouping_key == "cloudwatch:ftw-production-rds-connections-critical"
    # SNS redelivers the same MessageId: stored once
    r = api_client.post(SNS, alarm)
    assert r.status_code == 200 and r.json()["duplicate"] is True
    assert AlertDelivery.objects.count() == 1
    ok = sns_signer.sign(load("sns/cloudwatch-ok.json"), version)
    assert api_client.post(SNS, ok).status_code == 200
    inc.refresh_from_db()
    assert inc.status == "resolved"
    assert len(sns_signer.fetched) == 1  # the certificate is cached


def test_sns_forged_signature_and_unknown_topic(api_client, db, sns_signer):
    alarm = sns_signer.sign(load("sns/cloudwatch-alarm.json"))
    forged = dict(alarm, Message=alarm["Message"].replace("ALARM", "OK"))
    r = api_client.post(SNS, forged)
    assert r.status_code == 403 and r.json()["error"] == "bad_signature"
    other = sns_signer.sign(dict(load("sns/cloudwatch-alarm.json"), TopicArn="arn:aws:sns:us-east-1:999999999999:evil"))
    r = api_client.post(SNS, other)
    assert r.status_code == 403 and r.json()["error"] == "unknown_topic"
    evil_cert = dict(alarm, SigningCertURL="https://evil.example.com/cert.pem")
    r = api_client.post(SNS, evil_cert)
    assert r.status_code == 403 and "sns.<region>.amazonaws.com" in r.json()["detail"]
    assert api_client.post(SNS, raw=b"{nope").status_code == 400
    assert api_client.post(SNS, {"Type": "Notification"}).status_code == 422
    assert AlertDelivery.objects.count() == 0 and Incident.objects.count() == 0
    assert set(RejectedDelivery.objects.values_list("reason", flat=True)) == {"bad_signature", "unknown_topic", "bad_cert_url", "malformed_json", "missing_field"}
    assert TOPIC in str(alarm)
    assert api_client.post(SNS, alarm).status_code == 200
    assert Incident.objects.count() == 1


def test_sns_unsubscribe_and_insufficient_data(api_client, db, sns_signer):
    unsub = dict(load("sns/subscription-confirmation.json"), Type="UnsubscribeConfirmation", MessageId="u-1")
    assert api_client.post(SNS, sns_signer.sign(unsub)).status_code == 200
    assert AlertDelivery.objects.get(dedup_key="u-1").error == "unsubscribe noted"
    alarm = load("sns/cloudwatch-alarm.json")
    message = json.loads(alarm["Message"])
    message["NewStateValue"] = "INSUFFICIENT_DATA"
    insufficient = dict(alarm, Message=json.dumps(message), MessageId="i-1")
    assert api_client.post(SNS, sns_signer.sign(insufficient)).status_code == 200
    assert "INSUFFICIENT_DATA" in AlertDelivery.objects.get(dedup_key="i-1").error
    assert Incident.objects.count() == 0
    not_cloudwatch = dict(alarm, Message="hello", MessageId="n-1")
    r = api_client.post(SNS, sns_signer.sign(not_cloudwatch))
    assert r.status_code == 422 and r.json()["error"] == "not_cloudwatch"


def test_auto_resolve_off_and_label_grouping(api_client, alerts_token, db):
    from portal.incidents.models import AlertSourceConfig

    AlertSourceConfig.objects.create(source="alertmanager", auto_resolve=False, grouping_labels=["service"])
    post_am(api_client, load("alertmanager/firing-v0.25.json"), alerts_token)
    inc = Incident.objects.get()
    assert inc.grouping_key == "alertmanager:labels:service=portal"
    post_am(api_client, load("alertmanager/resolved-v0.25.json"), alerts_token)
    inc.refresh_from_db()
    assert inc.status == "triggered" and inc.alerts.get().status == "resolved"
    assert inc.timeline.filter(kind="alert_resolved").exists()
