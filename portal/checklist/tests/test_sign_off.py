from datetime import timedelta

import pytest
from django.utils import timezone

from portal.audit.models import AuditEvent
from portal.checklist.models import ChecklistItem, ItemStatus, SignOff
from portal.checklist.selectors import readiness
from portal.checklist.services import (
    ChecklistError,
    evidence_add,
    item_configure,
    item_mark_ready,
    item_revoke,
    item_sign_off,
)


def test_twelve_items_seeded(items):
    assert len(items) == 12
    assert items["backups"].verifiable and not items["accounts"].verifiable
    assert items["backups"].required_signers == 2


def test_responder_cannot_sign_off_and_nothing_changes(item, responder):
    item_mark_ready(item=item, actor=responder)
    before = AuditEvent.objects.count()
    with pytest.raises(ChecklistError) as exc:
        item_sign_off(item=item, actor=responder)
    assert exc.value.status == 403
    item.refresh_from_db()
    assert item.status == ItemStatus.READY
    assert SignOff.objects.count() == 0
    assert AuditEvent.objects.count() == before


def test_preparer_alone_cannot_complete_a_two_person_item(item, lead, lead2):
    item_mark_ready(item=item, actor=lead)
    sig, changed = item_sign_off(item=item, actor=lead)
    assert changed
    item.refresh_from_db()
    assert item.status == ItemStatus.READY
    # clicking again does not count twice
    sig2, changed = item_sign_off(item=item, actor=lead)
    assert not changed and sig2.pk == sig.pk
    item.refresh_from_db()
    assert item.status == ItemStatus.READY and SignOff.objects.filter(item=item).count() == 1
    item_sign_off(item=item, actor=lead2)
    item.refresh_from_db()
    assert item.status == ItemStatus.SIGNED_OFF and item.signed_off_at is not None


def test_one_person_item_still_needs_someone_other_than_the_preparer(item, lead, lead2):
    item_configure(item=item, actor=lead, required_signers=1, attestation_days=None)
    item_mark_ready(item=item, actor=lead)
    item_sign_off(item=item, actor=lead)
    item.refresh_from_db()
    assert item.status == ItemStatus.READY
    item_sign_off(item=item, actor=lead2)
    item.refresh_from_db()
    assert item.status == ItemStatus.SIGNED_OFF


def test_sign_off_records_who_when_and_evidence_as_it_stood(item, responder, lead, lead2):
    evidence_add(item=item, actor=responder, kind="note", text="pen test report reviewed")
    evidence_add(item=item, actor=responder, kind="link", url="https://example.org/report")
    item_mark_ready(item=item, actor=responder)
    sig, _ = item_sign_off(item=item, actor=lead, note="looks right")
    evidence_add(item=item, actor=responder, kind="note", text="added after the signature")
    sig.refresh_from_db()
    assert sig.signer == lead and sig.signed_at is not None
    texts = [e["text"] for e in sig.evidence_snapshot["evidence"]]
    assert "pen test report reviewed" in texts and "added after the signature" not in texts
    assert AuditEvent.objects.filter(verb="checklist.sign_off", target_id="load-testing").count() == 1


def test_sign_off_needs_a_ready_item(item, lead):
    with pytest.raises(ChecklistError) as exc:
        item_sign_off(item=item, actor=lead)
    assert exc.value.status == 409


def test_revoke_needs_a_reason(item, responder, lead, lead2):
    item_mark_ready(item=item, actor=responder)
    item_sign_off(item=item, actor=lead)
    item_sign_off(item=item, actor=lead2)
    for reason in ("", "  ", "x"):
        with pytest.raises(ChecklistError) as exc:
            item_revoke(item=item, actor=lead, reason=reason)
        assert exc.value.status == 422
    item.refresh_from_db()
    assert item.status == ItemStatus.SIGNED_OFF
    _, changed = item_revoke(item=item, actor=lead, reason="the audit missed the admin API")
    assert changed
    _, changed = item_revoke(item=item, actor=lead, reason="the audit missed the admin API")
    assert not changed
    item.refresh_from_db()
    assert item.status == ItemStatus.REVOKED and item.revoke_reason == "the audit missed the admin API"
    assert not SignOff.objects.filter(item=item, revoked_at__isnull=True).exists()
    assert AuditEvent.objects.filter(verb="checklist.revoke").count() == 1
    # a new round: old signatures do not count
    item_mark_ready(item=item, actor=responder)
    item_sign_off(item=item, actor=lead)
    item.refresh_from_db()
    assert item.status == ItemStatus.READY and item.round == 2


def test_responder_cannot_revoke(item, responder, lead, lead2):
    item_mark_ready(item=item, actor=responder)
    item_sign_off(item=item, actor=lead)
    item_sign_off(item=item, actor=lead2)
    with pytest.raises(ChecklistError) as exc:
        item_revoke(item=item, actor=responder, reason="I think not")
    assert exc.value.status == 403
    item.refresh_from_db()
    assert item.status == ItemStatus.SIGNED_OFF


def test_expiry_flags_the_item_and_readiness_drops(item, responder, lead, lead2):
    item_mark_ready(item=item, actor=responder)
    item_sign_off(item=item, actor=lead, expires_at=timezone.now() + timedelta(days=30))
    item_sign_off(item=item, actor=lead2)
    item.refresh_from_db()
    assert item.complete and readiness().complete == 1
    ChecklistItem.objects.filter(pk=item.pk).update(attested_until=timezone.now() - timedelta(minutes=1))
    item.refresh_from_db()
    assert item.expired and not item.complete
    r = readiness()
    assert r.complete == 0 and r.expired == 1
    assert any("expired" in reason for i, reason in r.blockers if i.slug == item.slug)
    # re-attestation starts a new round
    _, changed = item_mark_ready(item=item, actor=responder)
    assert changed
    item.refresh_from_db()
    assert item.status == ItemStatus.READY and item.round == 2


def test_expiry_in_the_past_is_refused(item, responder, lead):
    item_mark_ready(item=item, actor=responder)
    with pytest.raises(ChecklistError):
        item_sign_off(item=item, actor=lead, expires_at=timezone.now() - timedelta(days=1))


def test_viewer_cannot_add_evidence(item, viewer):
    with pytest.raises(ChecklistError) as exc:
        evidence_add(item=item, actor=viewer, kind="note", text="hi")
    assert exc.value.status == 403


def test_bad_link_is_refused(item, responder):
    with pytest.raises(ChecklistError):
        evidence_add(item=item, actor=responder, kind="link", url="javascript:alert(1)")


def test_scheduled_run_flags_an_expired_sign_off_once_and_tells_the_leads(
    item, responder, lead, lead2, django_capture_on_commit_callbacks
):
    from django.core import mail

    from portal.checklist.models import ChecklistNotification
    from portal.checklist.tasks import checklist_verify

    lead.email = "lena@example.org"
    lead.save(update_fields=["email"])
    item_mark_ready(item=item, actor=responder)
    item_sign_off(item=item, actor=lead, expires_at=timezone.now() + timedelta(days=1))
    item_sign_off(item=item, actor=lead2)
    assert checklist_verify().get("expired") is None
    ChecklistItem.objects.filter(pk=item.pk).update(attested_until=timezone.now() - timedelta(minutes=1))
    with django_capture_on_commit_callbacks(execute=True):
        assert checklist_verify()["expired"] == ["load-testing"]
        assert checklist_verify().get("expired") is None  # once
    assert ChecklistNotification.objects.get(kind="expired").delivered
    assert len(mail.outbox) == 1 and "re-attest" in mail.outbox[0].subject
    assert AuditEvent.objects.filter(verb="checklist.expired").count() == 1
