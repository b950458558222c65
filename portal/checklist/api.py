"""JSON API for the checklist (mounted at /api/v1/checklist)."""

from __future__ import annotations

import json

from django.conf import settings
from ninja import Router, Schema

from portal.api_auth import ScopedTokenAuth, require_scope
from portal.checklist.models import ChecklistItem
from portal.checklist.selectors import items_for_board, readiness, signature_progress
from portal.checklist.services import (
    evidence_add_load_test,
    evidence_fetch_load_test,
    item_revoke,
    item_sign_off,
    parse_expiry,
    verification_record,
)
from portal.checklist.verify import VERIFIERS, run_check
from portal.cloud.models import Environment
from portal.errors import Invalid, NotFound

router = Router()


class SignOffIn(Schema):
    note: str = ""
    expires: str = ""  # YYYY-MM-DD or a number of days; empty: the item's default


class RevokeIn(Schema):
    reason: str


class VerifyIn(Schema):
    environment: str = ""


class LoadTestIn(Schema):
    url: str = ""  # a k6 --summary-export or Locust --json file to fetch
    result: dict | list | None = None  # or the file's JSON itself
    file_name: str = ""
    environment: str = ""  # whose outbound policy the fetch follows; empty: the default environment


def item_json(item: ChecklistItem) -> dict:
    p = signature_progress(item)
    return {
        "slug": item.slug, "position": item.position, "title": item.title, "description": item.description,
        "owner_role": item.owner_role, "owner": item.owner.get_username() if item.owner else None,
        "status": item.status, "round": item.round, "complete": item.complete,
        "required_signers": item.required_signers, "signatures": [
            {"signer": s.signer_label, "signed_at": s.signed_at, "expires_at": s.expires_at, "note": s.note} for s in p["signatures"]
        ],
        "signatures_missing": p["missing"] if item.status == "ready" else 0,
        "ready_by": item.ready_by_label or None, "ready_at": item.ready_at, "signed_off_at": item.signed_off_at,
        "attested_until": item.attested_until, "expired": item.expired, "revoke_reason": item.revoke_reason or None,
        "verifiable": item.verifiable,
        "verification": None if not item.verification_outcome else {
            "outcome": item.verification_outcome, "summary": item.verification_summary, "ran_at": item.verified_at,
        },
        "evidence_stale": item.evidence_stale,
    }


def _item(slug: str) -> ChecklistItem:
    item = items_for_board().filter(slug=slug).first()
    if item is None:
        raise NotFound(f"no checklist item {slug!r}")
    return item


@router.get("", summary="The checklist items and the launch readiness")
def list_items(request):
    require_scope(request, "read")
    items = list(items_for_board())
    return {"readiness": readiness(items).as_dict(), "items": [item_json(i) for i in items]}


@router.get("/{slug}", summary="One checklist item")
def get_item(request, slug: str):
    require_scope(request, "read")
    return item_json(_item(slug))


@router.post("/{slug}/sign-off", summary="Sign off an item ready for sign-off (leads)", auth=ScopedTokenAuth("lead"))
def sign_off(request, slug: str, payload: SignOffIn):
    token = require_scope(request, "lead")
    item = _item(slug)
    expires_at = parse_expiry(payload.expires)
    sig, changed = item_sign_off(item=item, actor=token, note=payload.note, expires_at=expires_at)
    item = _item(slug)
    return {"changed": changed, "signature": {"signer": sig.signer_label, "signed_at": sig.signed_at, "round": sig.round},
            "item": item_json(item)}


@router.post("/{slug}/revoke", summary="Revoke an item's sign-off, with a reason (leads)", auth=ScopedTokenAuth("lead"))
def revoke(request, slug: str, payload: RevokeIn):
    token = require_scope(request, "lead")
    item = _item(slug)
    _, changed = item_revoke(item=item, actor=token, reason=payload.reason)
    return {"changed": changed, "item": item_json(_item(slug))}


@router.post("/{slug}/verify", summary="Run an item's automated verification now", auth=ScopedTokenAuth("actions"))
def verify(request, slug: str, payload: VerifyIn | None = None):
    token = require_scope(request, "actions")
    item = _item(slug)
    if slug not in VERIFIERS:
        raise Invalid(f"the cloud cannot answer {slug!r}: it is signed off by people only", code="not_verifiable")
    name = (payload.environment if payload else "") or ""
    try:
        env = Environment.objects.get(name=name) if name else Environment.objects.get_default()
    except Environment.DoesNotExist:
        raise NotFound(f"no environment {name or 'default'!r} to verify against") from None
    result = run_check(slug, env)
    v = verification_record(item=item, outcome=result.outcome, summary=result.summary, evidence=result.evidence,
                            triggered_by=token.audit_label, environment_name=env.name)
    return {"outcome": v.outcome, "summary": v.summary, "ran_at": v.ran_at, "environment": env.name,
            "evidence": v.evidence, "item": item_json(_item(slug))}


@router.post("/{slug}/load-test", summary="Judge a k6 or Locust result (inline or at a URL) against the plan, kept as evidence",
             auth=ScopedTokenAuth("actions"))
def load_test(request, slug: str, payload: LoadTestIn):
    token = require_scope(request, "actions")
    item = _item(slug)
    if payload.result is not None:
        content = json.dumps(payload.result).encode()
        ev, verdict = evidence_add_load_test(item=item, actor=token, content=content, file_name=payload.file_name or "load-test.json")
    elif payload.url:
        env = (Environment.objects.filter(name=payload.environment).first() if payload.environment
               else Environment.objects.filter(name=settings.DEFAULT_ENVIRONMENT).first())
        ev, verdict = evidence_fetch_load_test(item=item, actor=token, url=payload.url, environment=env)
    else:
        raise Invalid("send the result as \"result\" (the file's JSON) or a \"url\" to fetch it from")
    return {"passed": verdict.passed, "summary": verdict.summary, "problems": verdict.problems,
            "measured": verdict.as_dict()["measured"], "targets": verdict.as_dict()["targets"],
            "evidence": ev.snapshot(), "item": item_json(_item(slug))}
