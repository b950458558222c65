from django.core.files.uploadedfile import SimpleUploadedFile

from portal.audit.models import AuditEvent
from portal.checklist.models import ChecklistItem, Evidence, ItemStatus, SignOff
from portal.checklist.services import item_mark_ready


def test_board_and_summary_show_readiness(client, items, viewer):
    client.force_login(viewer)
    body = client.get("/checklist/").content.decode()
    assert "NO-GO" in body and 'data-testid="readiness-percent">0%' in body
    assert "Database backups automated" in body
    assert client.get("/checklist/summary/").status_code == 200
    assert "0%" in client.get("/checklist/panel/").content.decode()


def test_responder_sees_no_sign_off_button_and_is_refused(client, items, responder, lead):
    item = items["load-testing"]
    item_mark_ready(item=item, actor=lead)
    client.force_login(responder)
    body = client.get("/checklist/load-testing/").content.decode()
    assert 'data-testid="sign-off-button"' not in body
    before = AuditEvent.objects.count()
    r = client.post("/checklist/load-testing/sign-off/")
    assert r.status_code == 403
    assert SignOff.objects.count() == 0 and AuditEvent.objects.count() == before
    assert ChecklistItem.objects.get(slug="load-testing").status == ItemStatus.READY


def test_lead_signs_off_through_the_page(client, items, responder, lead, lead2):
    item_mark_ready(item=items["load-testing"], actor=responder)
    client.force_login(lead)
    body = client.get("/checklist/load-testing/").content.decode()
    assert 'data-testid="sign-off-button"' in body and "data-confirm" in body
    r = client.post("/checklist/load-testing/sign-off/", {"note": "reviewed"})
    assert r.status_code == 302
    client.force_login(lead2)
    client.post("/checklist/load-testing/sign-off/")
    assert ChecklistItem.objects.get(slug="load-testing").status == ItemStatus.SIGNED_OFF
    # a double click: nothing more
    client.post("/checklist/load-testing/sign-off/")
    assert SignOff.objects.filter(item__slug="load-testing").count() == 2
    panel = client.get("/checklist/panel/").content.decode()
    assert 'data-testid="panel-readiness">8%' in panel  # 1 of 12


def test_revoke_without_reason_changes_nothing(client, items, responder, lead):
    item_mark_ready(item=items["accounts"], actor=responder)
    client.force_login(lead)
    r = client.post("/checklist/accounts/revoke/", {"reason": ""}, follow=True)
    assert "reason" in r.content.decode()
    assert ChecklistItem.objects.get(slug="accounts").status == ItemStatus.READY


def test_file_evidence_goes_through_storage(client, items, responder, settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    client.force_login(responder)
    upload = SimpleUploadedFile("restore-log.txt", b"restore verified at 12:00", content_type="text/plain")
    r = client.post("/checklist/disaster-recovery/evidence/", {"kind": "file", "file": upload, "text": "restore log"})
    assert r.status_code == 302
    ev = Evidence.objects.get(item__slug="disaster-recovery")
    assert ev.file_name == "restore-log.txt" and ev.file_size == 25 and len(ev.sha256) == 64
    r = client.get(f"/checklist/disaster-recovery/evidence/{ev.public_id}/")
    assert r.status_code == 200 and b"".join(r.streaming_content) == b"restore verified at 12:00"


def test_api_list_and_sign_off(api_client, items, make_token, responder):
    read = make_token("read")
    r = api_client.get("/api/v1/checklist", token=read)
    assert r.status_code == 200
    assert len(r.json()["items"]) == 12 and r.json()["readiness"]["percent"] == 0
    # an actions token cannot sign off
    r = api_client.post("/api/v1/checklist/load-testing/sign-off", {}, token=make_token("actions"))
    assert r.status_code == 403 and r.json()["error"] == "forbidden"
    # not ready yet: 409
    lead_token = make_token("lead")
    r = api_client.post("/api/v1/checklist/load-testing/sign-off", {}, token=lead_token)
    assert r.status_code == 409 and "ready" in r.json()["detail"]
    item_mark_ready(item=items["load-testing"], actor=responder)
    r = api_client.post("/api/v1/checklist/load-testing/sign-off", {"note": "ok"}, token=lead_token)
    assert r.status_code == 200 and r.json()["changed"] is True
    assert r.json()["item"]["status"] == "ready" and r.json()["item"]["signatures_missing"] == 1
    r = api_client.post("/api/v1/checklist/load-testing/sign-off", {"note": "ok"}, token=lead_token)
    assert r.json()["changed"] is False
    r = api_client.post("/api/v1/checklist/nope/sign-off", {}, token=lead_token)
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = api_client.post("/api/v1/checklist/load-testing/sign-off", {"expires": "soon"}, token=lead_token)
    assert r.status_code == 422 and r.json()["error"] == "invalid"


def test_api_verify_refuses_people_only_items(api_client, items, make_token):
    r = api_client.post("/api/v1/checklist/accounts/verify", {}, token=make_token("actions"))
    assert r.status_code == 422 and r.json()["error"] == "not_verifiable"
    r = api_client.post("/api/v1/checklist/backups/verify", {}, token=make_token("read"))
    assert r.status_code == 403


def test_board_queries_do_not_grow_with_signatures(client, items, responder, lead, lead2, django_assert_max_num_queries):
    from portal.checklist.services import item_sign_off

    for slug in ("accounts", "dns", "ssl", "cdn"):
        item_mark_ready(item=items[slug], actor=responder)
        item_sign_off(item=items[slug], actor=lead)
        item_sign_off(item=items[slug], actor=lead2)
    client.force_login(lead)
    with django_assert_max_num_queries(12):
        assert client.get("/checklist/").status_code == 200
    with django_assert_max_num_queries(12):
        assert client.get("/checklist/panel/").status_code == 200
