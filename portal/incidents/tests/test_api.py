import pytest

from portal.incidents import ingest, services
from portal.incidents.models import Notification, NotificationChannel
from portal.incidents.seed import seed
from portal.plan.loader import load_plan


def sandbox_may_reach_local_servers():
    """The default environment is the sandbox, whose outbound policy allows 127.0.0.1."""
    from portal.cloud.models import Environment
    from portal.health.models import OutboundPolicy

    env, _ = Environment.objects.get_or_create(name="sandbox", defaults={"credentials_mode": "static"})
    OutboundPolicy.objects.update_or_create(environment=env, defaults={"allow_private_targets": True})


def make_incident(name="HighErrorRate", fp="e1", severity="critical"):
    return ingest.alert_ingest_internal(source="health", fingerprint=fp, name=name, severity=severity, firing=True,
                                          summary="5xx above 5%", labels={"service": "api"}).incident


def test_list_detail_and_actions(api_client, make_token, db):
    inc = make_incident()
    other = make_incident(name="SlowResponses", fp="s1", severity="warning")
    services.incident_resolve(incident=other, actor="system:test")
    read, act = make_token("read"), make_token("actions")

    r = api_client.get("/api/v1/incidents?status=open", token=read)
    assert r.status_code == 200 and r.json()["count"] == 1 and r.json()["results"][0]["id"] == str(inc.public_id)
    assert api_client.get("/api/v1/incidents?status=resolved", token=read).json()["count"] == 1
    assert api_client.get("/api/v1/incidents?status=bogus", token=read).status_code == 422
    assert api_client.get("/api/v1/incidents", token=None).status_code == 401

    r = api_client.get(f"/api/v1/incidents/{inc.public_id}", token=read)
    body = r.json()
    assert r.status_code == 200 and body["alerts"][0]["name"] == "HighErrorRate" and body["timeline"][0]["kind"] == "opened"
    assert api_client.get("/api/v1/incidents/not-a-uuid", token=read).status_code == 404

    url = f"/api/v1/incidents/{inc.public_id}"
    r = api_client.post(f"{url}/acknowledge", token=read)
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    r = api_client.post(f"{url}/acknowledge", token=act)
    assert r.status_code == 200 and r.json()["status"] == "acknowledged" and r.json()["acknowledged_by"].startswith("token:")
    assert api_client.post(f"{url}/acknowledge", token=act).status_code == 200
    r = api_client.post(f"{url}/notes", {"text": "looking at **green**"}, token=act)
    assert r.status_code == 201 and r.json()["kind"] == "note"
    assert api_client.post(f"{url}/notes", {"text": "  "}, token=act).status_code == 422
    assert api_client.post(f"{url}/notes", {"nope": 1}, token=act).status_code == 422
    r = api_client.post(f"{url}/resolve", {"reason": "fixed"}, token=act)
    assert r.status_code == 200 and r.json()["status"] == "resolved"
    r = api_client.post(f"{url}/acknowledge", token=act)
    assert r.status_code == 409 and r.json()["error"] == "conflict"


def test_openapi_documents_the_routes(client, db):
    doc = client.get("/api/v1/openapi.json").json()
    for path in ("/api/v1/alerts/alertmanager", "/api/v1/alerts/sns", "/api/v1/incidents", "/api/v1/incidents/{incident_id}",
                 "/api/v1/incidents/{incident_id}/acknowledge", "/api/v1/incidents/{incident_id}/resolve", "/api/v1/incidents/{incident_id}/notes"):
        assert path in doc["paths"], path
    assert "200" in doc["paths"]["/api/v1/incidents"]["get"]["responses"]
    assert "413" in doc["paths"]["/api/v1/alerts/alertmanager"]["post"]["responses"]


@pytest.mark.django_db(transaction=True)
def test_slack_and_twilio_channels_reach_local_servers(httpserver, settings):
    seed(load_plan(), reset=False)
    sandbox_may_reach_local_servers()
    settings.TWILIO_API_BASE = httpserver.url_for("/")
    settings.TWILIO_ACCOUNT_SID, settings.TWILIO_AUTH_TOKEN, settings.TWILIO_FROM = "AC123", "secret", "+15550000"
    httpserver.expect_request("/hook", method="POST").respond_with_json({"ok": True})
    httpserver.expect_request("/2010-04-01/Accounts/AC123/Messages.json", method="POST").respond_with_json({"sid": "SM1"}, status=201)
    NotificationChannel.objects.filter(name="ops chat webhook").update(enabled=True)
    chat = NotificationChannel.objects.get(name="ops chat webhook")
    chat.webhook_url = httpserver.url_for("/hook")
    chat.save()
    NotificationChannel.objects.filter(name="on-call SMS").update(enabled=True, target="+15551234")
    inc = make_incident()
    statuses = dict(Notification.objects.filter(incident=inc).values_list("channel__name", "status"))
    assert statuses == {"on-call email": "sent", "ops chat webhook": "sent", "on-call SMS": "sent"}
    sms = [req for req, _ in httpserver.log if req.path.endswith("Messages.json")][0]
    assert sms.form["To"] == "+15551234" and "HighErrorRate" in sms.form["Body"]
    assert sms.authorization.username == "AC123"
    hook = [req for req, _ in httpserver.log if req.path == "/hook"][0]
    assert "HighErrorRate" in hook.get_json()["text"]
    assert inc.timeline.filter(kind="notification").count() == 3
