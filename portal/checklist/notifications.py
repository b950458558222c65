"""The checklist's mail to the leads: recorded with its audit row, then sent once through portal.notify."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

from portal import notify
from portal.accounts.roles import LEAD
from portal.audit.services import audit_record
from portal.checklist.models import ChecklistItem, ChecklistNotification, ChecklistVerification
from portal.tasking import enqueue


def lead_recipients() -> list[str]:
    User = get_user_model()
    return sorted(
        set(
            User.objects.filter(groups__name=LEAD, is_active=True).exclude(email="").values_list("email", flat=True)
        )
    )


def leads_notify(item: ChecklistItem, *, kind: str, subject: str, body: str) -> ChecklistNotification:
    """Record a mail to the leads about `item` (audited) and send it after commit."""
    url = f"{settings.PORTAL_BASE_URL.rstrip('/')}{item.get_absolute_url()}"
    note = ChecklistNotification.objects.create(item=item, kind=kind, subject=subject, body=body + url + "\n",
                                                recipients=lead_recipients())
    audit_record(actor="system:checklist", verb="checklist.notify_leads", target=item,
                 after={"notification": note.pk, "kind": kind, "recipients": note.recipients, "subject": note.subject})
    enqueue("portal.checklist.tasks.checklist_send_notification", note.pk)
    return note


def leads_notify_expired(item: ChecklistItem) -> ChecklistNotification:
    return leads_notify(
        item, kind="expired",
        subject=f"[launch readiness] {item.title}: sign-off expired, re-attest",
        body=(f"The sign-off of \"{item.title}\" expired on {item.attested_until:%Y-%m-%d %H:%M} UTC.\n"
              "It no longer counts toward launch readiness until it is prepared and signed again.\n"),
    )


def leads_notify_regressed(item: ChecklistItem, v: ChecklistVerification) -> ChecklistNotification:
    return leads_notify(
        item, kind="regressed",
        subject=f"[launch readiness] {item.title}: sign-off no longer backed by evidence",
        body=(
            f"The automated verification of \"{item.title}\" failed after the item was signed off.\n\n"
            f"What the cloud answered: {v.summary}\n"
            f"Environment: {v.environment_name or '-'}; checked at {v.ran_at:%Y-%m-%d %H:%M} UTC.\n\n"
            "The item no longer counts toward launch readiness until the check passes again or the item is re-attested.\n"
        ),
    )


def notification_deliver(*, notification_id: int) -> bool:
    """Send a recorded notification by email once (a redelivered task finds it delivered)."""
    with transaction.atomic():
        note = ChecklistNotification.objects.select_for_update().filter(pk=notification_id).first()
        if note is None or note.delivered:
            return False
        if not note.recipients:
            note.error = "no lead has an email address"
            note.save(update_fields=["error"])
            return False
        try:
            notify.mail(subject=note.subject, body=note.body, recipients=list(note.recipients))
        except Exception as exc:  # SMTP trouble: keep the record, say why; the task may retry
            note.error = str(exc)[:300]
            note.save(update_fields=["error"])
            raise
        note.delivered = True
        note.error = ""
        note.save(update_fields=["delivered", "error"])
    return True
