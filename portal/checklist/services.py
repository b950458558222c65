"""Writes on the checklist: evidence, mark ready, sign off, revoke, verification results.

Every change writes its audit row in the same transaction; each is safe to call twice (the
second call changes nothing and says so through the returned `changed` flag).
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.base import ContentFile
from django.core.validators import URLValidator
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal import outbound
from portal.accounts.models import ApiToken
from portal.accounts.roles import RESPOND, SIGN_OFF
from portal.actors import Actor
from portal.audit.services import audit_record
from portal.checklist.models import (
    ChecklistItem,
    ChecklistVerification,
    Evidence,
    ItemStatus,
    SignOff,
    VerificationOutcome,
)
from portal.checklist.notifications import leads_notify_expired, leads_notify_regressed
from portal.checklist.verify import VERIFIERS, run_check
from portal.checklist.verify_evidence import (
    LOAD_TEST_ITEM,
    RESTORE_ITEM,
    RESTORE_RUNBOOK,
    LoadTestFileError,
    LoadTestVerdict,
    load_test_evaluate,
    load_test_fetch,
    restore_run_summary,
)
from portal.errors import PortalError
from runbooks.models import RunbookRun, RunStatus

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 20 * 1024 * 1024
MAX_NOTE_CHARS = 5000


class ChecklistError(PortalError):
    """A checklist action refused; `code` sets the HTTP status (forbidden 403, conflict 409, invalid 422)."""

    STATUS = {"forbidden": 403, "not_found": 404, "conflict": 409, "invalid": 422}

    def __init__(self, code: str, message: str):
        super().__init__(message, code=code, status=self.STATUS.get(code, 400))
        self.message = message


# --- who is acting -------------------------------------------------------------------------------

def _signer_key(actor) -> str:
    who = Actor.of(actor)
    if who.person is not None:
        return f"user:{who.person.pk}"
    if who.token is not None:
        return f"token:{who.token.pk}"
    raise ChecklistError("forbidden", "a sign-off needs a person or a lead's API token")


def _can(actor, perm: str, scope: str) -> bool:
    """Users need the permission; API tokens need the scope (checked again here, not only at the edge)."""
    if isinstance(actor, ApiToken):
        if not actor.grants(scope):
            return False
        person = actor.created_by
        return person is None or person.has_perm(perm)
    return bool(getattr(actor, "is_authenticated", False) and actor.is_active and actor.has_perm(perm))


def _require(actor, perm: str, scope: str, what: str) -> None:
    if not _can(actor, perm, scope):
        raise ChecklistError("forbidden", f"your role does not allow you to {what}")


def _lock(item: ChecklistItem) -> ChecklistItem:
    return ChecklistItem.objects.select_for_update().get(pk=item.pk)


def _state(item: ChecklistItem) -> dict:
    return {
        "status": item.status, "round": item.round, "ready_by": item.ready_by_label or None,
        "attested_until": item.attested_until, "evidence_stale": item.evidence_stale,
    }


# --- evidence ------------------------------------------------------------------------------------

def evidence_add(*, item: ChecklistItem, actor, kind: str, text: str = "", url: str = "", upload=None) -> Evidence:
    """Attach a note, a link or a file. Files go through default_storage (S3 in production)."""
    _require(actor, RESPOND, "actions", "add evidence")
    text = (text or "").strip()
    url = (url or "").strip()
    if kind not in Evidence.Kind.values:
        raise ChecklistError("invalid", f"evidence kind must be one of {', '.join(Evidence.Kind.values)}")
    if len(text) > MAX_NOTE_CHARS:
        raise ChecklistError("invalid", f"the note is longer than {MAX_NOTE_CHARS} characters")
    if kind == Evidence.Kind.NOTE and not text:
        raise ChecklistError("invalid", "a note needs some text")
    if kind == Evidence.Kind.LINK:
        try:
            URLValidator(schemes=["http", "https"])(url)
        except ValidationError:
            raise ChecklistError("invalid", "the link must be a full http(s) URL") from None
        if len(url) > 500:
            raise ChecklistError("invalid", "the link is longer than 500 characters")
    content = None
    if kind == Evidence.Kind.FILE:
        if upload is None:
            raise ChecklistError("invalid", "choose a file to attach")
        if upload.size is not None and upload.size > MAX_FILE_BYTES:
            raise ChecklistError("invalid", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        content = upload.read()
        if len(content) > MAX_FILE_BYTES:
            raise ChecklistError("invalid", f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
        if not content:
            raise ChecklistError("invalid", "the file is empty")
    with transaction.atomic():
        item = _lock(item)
        ev = Evidence(
            item=item, kind=kind, text=text, url=url if kind == Evidence.Kind.LINK else "",
            added_by=Actor.of(actor).person, added_by_label=Actor.of(actor).label,
        )
        if content is not None:
            name = (getattr(upload, "name", "") or "evidence").rsplit("/", 1)[-1][:200]
            ev.file_name = name
            ev.file_size = len(content)
            ev.sha256 = hashlib.sha256(content).hexdigest()
            ev.file.save(name, ContentFile(content), save=False)
        ev.save()
        audit_record(actor=actor, verb="checklist.evidence_add", target=item, after=ev.snapshot())
    return ev


def _evidence_snapshot(item: ChecklistItem) -> dict:
    latest = item.verifications.order_by("-ran_at", "-pk").first()
    return {
        "taken_at": timezone.now().isoformat(),
        "evidence": [e.snapshot() for e in item.evidence.all()],
        "verification": None if latest is None else {
            "outcome": latest.outcome, "summary": latest.summary, "ran_at": latest.ran_at.isoformat(),
            "environment": latest.environment_name,
        },
    }


# --- the sign-off state machine -------------------------------------------------------------------

def item_mark_ready(*, item: ChecklistItem, actor, note: str = "") -> tuple[ChecklistItem, bool]:
    """Open (or revoked, or an expired / contradicted sign-off) -> ready for sign-off. The actor is the preparer."""
    _require(actor, RESPOND, "actions", "mark items ready")
    note = (note or "").strip()
    if len(note) > MAX_NOTE_CHARS:
        raise ChecklistError("invalid", f"the note is longer than {MAX_NOTE_CHARS} characters")
    with transaction.atomic():
        item = _lock(item)
        if item.status == ItemStatus.READY:
            return item, False
        if item.status == ItemStatus.SIGNED_OFF and not (item.expired or item.evidence_stale):
            raise ChecklistError("conflict", "this item is signed off and current; revoke it first to prepare it again")
        before = _state(item)
        if item.status in (ItemStatus.SIGNED_OFF, ItemStatus.REVOKED):
            item.round += 1  # earlier signatures do not count for the new attestation
        item.status = ItemStatus.READY
        item.ready_by = Actor.of(actor).person
        item.ready_by_label = Actor.of(actor).label
        item.ready_at = timezone.now()
        item.signed_off_at = None
        item.attested_until = None
        item.evidence_stale = False
        item.evidence_stale_since = None
        item.expiry_flagged_at = None
        item.save()
        if note:
            Evidence.objects.create(item=item, kind=Evidence.Kind.NOTE, text=note, added_by=Actor.of(actor).person, added_by_label=Actor.of(actor).label)
        audit_record(actor=actor, verb="checklist.mark_ready", target=item, before=before, after=_state(item), extra={"note": note})
    return item, True


def item_sign_off(*, item: ChecklistItem, actor, note: str = "", expires_at: datetime | None = None) -> tuple[SignOff, bool]:
    """Add the actor's signature; the item is signed off once enough distinct people signed.

    Enough means `required_signers` distinct signers, at least one of whom is not the person who
    marked the item ready. Returns (signature, changed); signing twice returns the first signature.
    """
    _require(actor, SIGN_OFF, "lead", "sign off checklist items")
    key = _signer_key(actor)
    note = (note or "").strip()[:500]
    now = timezone.now()
    if expires_at is not None and expires_at <= now:
        raise ChecklistError("invalid", "the expiry must be in the future")
    with transaction.atomic():
        item = _lock(item)
        mine = item.sign_offs.filter(round=item.round, signer_key=key, revoked_at__isnull=True).first()
        if mine is not None:
            return mine, False
        if item.status == ItemStatus.SIGNED_OFF:
            raise ChecklistError("conflict", "this item is already signed off")
        if item.status != ItemStatus.READY:
            raise ChecklistError("conflict", f"this item is {item.get_status_display().lower()}: it must be marked ready for sign-off first")
        if expires_at is None and item.attestation_days:
            expires_at = now + timedelta(days=item.attestation_days)
        before = _state(item)
        try:
            with transaction.atomic():
                sig = SignOff.objects.create(
                    item=item, round=item.round, signer=Actor.of(actor).person, signer_key=key, signer_label=Actor.of(actor).label,
                    signed_at=now, expires_at=expires_at, note=note, evidence_snapshot=_evidence_snapshot(item),
                )
        except IntegrityError:
            return item.sign_offs.get(round=item.round, signer_key=key, revoked_at__isnull=True), False
        live = list(item.sign_offs.filter(round=item.round, revoked_at__isnull=True))
        keys = {s.signer_key for s in live}
        preparer = f"user:{item.ready_by_id}" if item.ready_by_id else None
        completed = len(keys) >= item.required_signers and bool(keys - {preparer})
        if completed:
            item.status = ItemStatus.SIGNED_OFF
            item.signed_off_at = now
            expiries = [s.expires_at for s in live if s.expires_at]
            item.attested_until = min(expiries) if expiries else None
            item.evidence_stale = False
            item.evidence_stale_since = None
            item.expiry_flagged_at = None
            item.save()
        audit_record(
            actor=actor, verb="checklist.sign_off", target=item, before=before, after=_state(item),
            extra={
                "round": item.round, "signers": sorted(s.signer_label for s in live), "required": item.required_signers,
                "completed": completed, "expires_at": expires_at, "note": note,
                "evidence_count": len(sig.evidence_snapshot.get("evidence", [])),
            },
        )
    return sig, True


def item_revoke(*, item: ChecklistItem, actor, reason: str) -> tuple[ChecklistItem, bool]:
    """Withdraw the item's sign-off (or its pending signatures). A reason is required."""
    _require(actor, SIGN_OFF, "lead", "revoke sign-offs")
    reason = (reason or "").strip()
    if len(reason) < 3:
        raise ChecklistError("invalid", "revoking needs a reason (a few words: what changed)")
    if len(reason) > 500:
        raise ChecklistError("invalid", "the reason is longer than 500 characters")
    with transaction.atomic():
        item = _lock(item)
        if item.status == ItemStatus.REVOKED:
            return item, False
        if item.status == ItemStatus.OPEN:
            raise ChecklistError("conflict", "this item is open: there is no sign-off to revoke")
        before = _state(item)
        now = timezone.now()
        revoked = item.sign_offs.filter(round=item.round, revoked_at__isnull=True).update(
            revoked_at=now, revoked_by_label=Actor.of(actor).label, revoke_reason=reason
        )
        item.status = ItemStatus.REVOKED
        item.revoked_at = now
        item.revoke_reason = reason
        item.signed_off_at = None
        item.attested_until = None
        item.evidence_stale = False
        item.evidence_stale_since = None
        item.expiry_flagged_at = None
        item.save()
        audit_record(actor=actor, verb="checklist.revoke", target=item, before=before, after=_state(item),
                     extra={"reason": reason, "signatures_revoked": revoked})
    return item, True


def item_configure(*, item: ChecklistItem, actor, required_signers: int, attestation_days: int | None, owner=None) -> tuple[ChecklistItem, bool]:
    """Set how many people must sign, the default sign-off expiry and the owner (leads)."""
    _require(actor, SIGN_OFF, "lead", "change sign-off rules")
    if not 1 <= int(required_signers) <= 10:
        raise ChecklistError("invalid", "required signers must be between 1 and 10")
    if attestation_days is not None and not 1 <= int(attestation_days) <= 3650:
        raise ChecklistError("invalid", "the expiry must be between 1 and 3650 days, or empty")
    with transaction.atomic():
        item = _lock(item)
        before = {"required_signers": item.required_signers, "attestation_days": item.attestation_days,
                  "owner": item.owner.get_username() if item.owner else None}
        item.required_signers = int(required_signers)
        item.attestation_days = int(attestation_days) if attestation_days is not None else None
        item.owner = owner
        after = {"required_signers": item.required_signers, "attestation_days": item.attestation_days,
                 "owner": owner.get_username() if owner else None}
        if before == after:
            return item, False
        item.save(update_fields=["required_signers", "attestation_days", "owner", "updated_at"])
        audit_record(actor=actor, verb="checklist.configure", target=item, before=before, after=after)
    return item, True


# --- automated verifications ----------------------------------------------------------------------

def verification_record(*, item: ChecklistItem, outcome: str, summary: str, evidence: dict, triggered_by: str,
                        environment_name: str = "") -> ChecklistVerification:
    """Keep a verification result; when a signed-off item now fails, flag it and tell the leads."""
    if outcome not in VerificationOutcome.values:
        raise ChecklistError("invalid", f"unknown outcome {outcome!r}")
    with transaction.atomic():
        item = _lock(item)
        before = {"outcome": item.verification_outcome or None, "evidence_stale": item.evidence_stale}
        v = ChecklistVerification.objects.create(
            item=item, outcome=outcome, summary=summary[:500], evidence=evidence,
            triggered_by=triggered_by[:150], environment_name=environment_name,
        )
        item.verification_outcome = outcome
        item.verification_summary = summary[:500]
        item.verified_at = v.ran_at
        fields = ["verification_outcome", "verification_summary", "verified_at", "updated_at"]
        verb = None
        if outcome == VerificationOutcome.FAILING and item.status == ItemStatus.SIGNED_OFF and not item.evidence_stale:
            item.evidence_stale = True
            item.evidence_stale_since = v.ran_at
            fields += ["evidence_stale", "evidence_stale_since"]
            verb = "checklist.evidence_stale"
        elif outcome == VerificationOutcome.PASSING and item.evidence_stale:
            item.evidence_stale = False
            item.evidence_stale_since = None
            fields += ["evidence_stale", "evidence_stale_since"]
            verb = "checklist.evidence_restored"
        elif before["outcome"] != outcome:
            verb = "checklist.verification_changed"
        item.save(update_fields=fields)
        if verb:
            audit_record(
                actor=triggered_by or "system:checklist", verb=verb, target=item, before=before,
                after={"outcome": outcome, "evidence_stale": item.evidence_stale},
                extra={"summary": summary[:500], "verification_id": v.pk, "environment": environment_name},
            )
        if verb == "checklist.evidence_stale":
            leads_notify_regressed(item, v)
    return v


def checklist_verify_all(*, items, env, triggered_by: str) -> list[ChecklistVerification]:
    """Judge each item that has a verifier against `env` and record the result (in item order)."""
    out = []
    for item in items:
        if item.slug not in VERIFIERS:
            continue
        result = run_check(item.slug, env)
        out.append(verification_record(item=item, outcome=result.outcome, summary=result.summary, evidence=result.evidence,
                                       triggered_by=triggered_by, environment_name=env.name))
    return out


def items_flag_expired(*, now: datetime | None = None) -> list[ChecklistItem]:
    """Once per expiry: mark signed-off items whose attestation passed, audit it and ask the leads to re-attest."""
    now = now or timezone.now()
    flagged = []
    due = ChecklistItem.objects.filter(status=ItemStatus.SIGNED_OFF, attested_until__lte=now, expiry_flagged_at__isnull=True)
    for pk in due.values_list("pk", flat=True):
        with transaction.atomic():
            item = ChecklistItem.objects.select_for_update().get(pk=pk)
            if item.status != ItemStatus.SIGNED_OFF or item.expiry_flagged_at or not item.expired:
                continue  # another worker got there, or it was re-attested meanwhile
            item.expiry_flagged_at = now
            item.save(update_fields=["expiry_flagged_at", "updated_at"])
            audit_record(actor="system:checklist", verb="checklist.expired", target=item,
                         before={"attested_until": item.attested_until}, after={"expired": True})
            leads_notify_expired(item)
            flagged.append(item)
    return flagged


def parse_expiry(value: str | None) -> datetime | None:
    """A date (YYYY-MM-DD, end of that day UTC) or a number of days from now; empty for none."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        days = int(value)
        if not 1 <= days <= 3650:
            raise ChecklistError("invalid", "the expiry must be between 1 and 3650 days")
        return timezone.now() + timedelta(days=days)
    try:
        day = datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=timezone.get_current_timezone())  # noqa: DTZ007
    except ValueError:
        raise ChecklistError("invalid", "the expiry must be a date (YYYY-MM-DD) or a number of days") from None
    return day + timedelta(days=1) - timedelta(seconds=1)


# --- evidence the portal produces ----------------------------------------------------------------

def evidence_add_load_test(*, item: ChecklistItem, actor, content: bytes, file_name: str = "",
                           source_url: str = "") -> tuple[Evidence, LoadTestVerdict]:
    """Judge a k6 / Locust result file against the plan and keep it, with the verdict, as evidence.
    A file that cannot be read stores nothing and says why."""
    _require(actor, RESPOND, "actions", "add evidence")
    if item.slug != LOAD_TEST_ITEM:
        raise ChecklistError("invalid", "load-test results are evidence for \u201cLoad testing performed\u201d only")
    name = ((file_name or "").rsplit("/", 1)[-1] or "load-test.json")[:200]
    try:
        verdict = load_test_evaluate(content)
    except LoadTestFileError as exc:
        raise ChecklistError("invalid", f"{name}: {exc}") from None
    with transaction.atomic():
        item = _lock(item)
        who = Actor.of(actor)
        ev = Evidence(item=item, kind=Evidence.Kind.FILE, text=verdict.summary[:MAX_NOTE_CHARS], url=(source_url or "")[:500],
                      added_by=who.person, added_by_label=who.label, file_name=name, file_size=len(content),
                      sha256=hashlib.sha256(content).hexdigest())
        ev.file.save(name, ContentFile(content), save=False)
        ev.save()
        audit_record(actor=actor, verb="checklist.load_test", target=item, after=ev.snapshot(), extra=verdict.as_dict())
    return ev, verdict


def evidence_fetch_load_test(*, item: ChecklistItem, actor, url: str, environment=None) -> tuple[Evidence, LoadTestVerdict]:
    """The same from a URL, fetched through portal.outbound (private addresses only where the environment allows)."""
    _require(actor, RESPOND, "actions", "add evidence")
    url = (url or "").strip()
    try:
        URLValidator(schemes=["http", "https"])(url)
    except ValidationError:
        raise ChecklistError("invalid", "the result URL must be a full http(s) URL") from None
    if len(url) > 500:
        raise ChecklistError("invalid", "the result URL is longer than 500 characters")
    try:
        content = load_test_fetch(url, allow_private=outbound.allows_private_targets(environment))
    except LoadTestFileError as exc:
        raise ChecklistError("invalid", str(exc)) from None
    name = url.split("?", 1)[0].rstrip("/").rsplit("/", 1)[-1] or "load-test.json"
    return evidence_add_load_test(item=item, actor=actor, content=content, file_name=name, source_url=outbound.redact_url(url))


def evidence_attach_restore_run(*, run_id: str) -> Evidence | None:
    """A completed backup-restore run becomes evidence on the DR item, once per run (a redelivery finds it)."""
    run = (RunbookRun.objects.select_related("version__runbook", "environment")
           .filter(public_id=run_id, status=RunStatus.COMPLETED, version__runbook__slug=RESTORE_RUNBOOK).first())
    item = ChecklistItem.objects.filter(slug=RESTORE_ITEM).first()
    if run is None or item is None:
        return None
    url = f"{settings.PORTAL_BASE_URL.rstrip('/')}{run.get_absolute_url()}"
    with transaction.atomic():
        item = _lock(item)
        existing = item.evidence.filter(kind=Evidence.Kind.LINK, url=url).first()
        if existing is not None:
            return existing
        ev = Evidence.objects.create(item=item, kind=Evidence.Kind.LINK, url=url, text=restore_run_summary(run),
                                     added_by=run.started_by, added_by_label=f"{run.started_by_label} (runbook run)"[:150])
        audit_record(actor="system:checklist", verb="checklist.evidence_add", target=item, after=ev.snapshot(),
                     extra={"automatic": True, "runbook_run": str(run.public_id), "runbook": RESTORE_RUNBOOK})
    return ev
