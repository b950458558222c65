import threading

import pytest
from django.db import connection

from portal.audit.models import AuditEvent
from portal.checklist.models import ChecklistItem, ItemStatus, SignOff
from portal.checklist.seed import seed
from portal.checklist.services import item_mark_ready, item_sign_off
from portal.plan.loader import load_plan


def test_seed_is_idempotent_and_keeps_edits(db):
    plan = load_plan()
    first = seed(plan, reset=False)
    assert first.created >= 12
    again = seed(plan, reset=False)
    assert again.created == 0 and again.updated == 0
    ChecklistItem.objects.filter(slug="dns").update(title="DNS on CloudFlare")
    kept = seed(plan, reset=False)
    assert kept.kept_edited == 1 and ChecklistItem.objects.get(slug="dns").title == "DNS on CloudFlare"
    seed(plan, reset=True)
    assert ChecklistItem.objects.get(slug="dns").title == "Domain registered and DNS configured"
    from django_celery_beat.models import PeriodicTask

    assert PeriodicTask.objects.filter(task="portal.checklist.tasks.checklist_verify").count() == 1


def _race(fns):
    errors = []
    barrier = threading.Barrier(len(fns))

    def run(fn):
        try:
            barrier.wait()
            fn()
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(fn,)) for fn in fns]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


@pytest.mark.postgres
def test_two_clicks_at_once_sign_once(transactional_db, require_postgres, responder, lead):
    seed(load_plan(), reset=False)
    item = ChecklistItem.objects.get(slug="load-testing")
    item_mark_ready(item=item, actor=responder)
    errors = _race([lambda: item_sign_off(item=item, actor=lead), lambda: item_sign_off(item=item, actor=lead)])
    assert errors == []
    assert SignOff.objects.filter(item=item).count() == 1
    assert AuditEvent.objects.filter(verb="checklist.sign_off").count() == 1


@pytest.mark.postgres
def test_two_leads_at_once_complete_the_item_once(transactional_db, require_postgres, responder, lead, lead2):
    seed(load_plan(), reset=False)
    item = ChecklistItem.objects.get(slug="load-testing")
    item_mark_ready(item=item, actor=responder)
    errors = _race([lambda: item_sign_off(item=item, actor=lead), lambda: item_sign_off(item=item, actor=lead2)])
    assert errors == []
    item.refresh_from_db()
    assert item.status == ItemStatus.SIGNED_OFF
    completed = [e.extra["completed"] for e in AuditEvent.objects.filter(verb="checklist.sign_off")]
    assert sorted(completed) == [False, True]
