"""Checklist pages: the go/no-go board, an item, the printable summary, the dashboard panel."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_POST

from portal.accounts.permissions import forbidden, perm_required
from portal.accounts.roles import RESPOND, SIGN_OFF, VIEW
from portal.checklist.models import ChecklistItem, Evidence, ItemStatus
from portal.checklist.selectors import blocker_reason, items_for_board, readiness, signature_progress
from portal.checklist.services import (
    MAX_FILE_BYTES,
    ChecklistError,
    evidence_add,
    evidence_add_load_test,
    evidence_fetch_load_test,
    item_configure,
    item_mark_ready,
    item_revoke,
    item_sign_off,
    parse_expiry,
    verification_record,
)
from portal.checklist.verify import VERIFIERS, run_check
from portal.checklist.verify_evidence import LOAD_TEST_ITEM, load_test_targets
from portal.cloud.models import Environment
from portal.tasking import enqueue


def _rows(items):
    return [{"item": i, "reason": blocker_reason(i), "progress": signature_progress(i)} for i in items]


@require_GET
@perm_required(VIEW)
def board(request):
    items = list(items_for_board())
    return render(request, "checklist/board.html", {
        "readiness": readiness(items), "rows": _rows(items),
        "can_respond": request.user.has_perm(RESPOND),
    })


@require_GET
@perm_required(VIEW)
def summary(request):
    items = list(items_for_board())
    return render(request, "checklist/summary.html", {"readiness": readiness(items), "rows": _rows(items)})


@require_GET
@perm_required(VIEW)
def panel(request):
    return render(request, "checklist/panel.html", {"readiness": readiness()})


def _item(slug) -> ChecklistItem:
    return get_object_or_404(items_for_board(), slug=slug)


@require_GET
@perm_required(VIEW)
def item_detail(request, slug):
    item = _item(slug)
    progress = signature_progress(item)
    user_key = f"user:{request.user.pk}"
    signed_by_me = any(s.signer_key == user_key for s in progress["signatures"])
    can_sign = request.user.has_perm(SIGN_OFF)
    can_respond = request.user.has_perm(RESPOND)
    return render(request, "checklist/item.html", {
        "item": item, "progress": progress, "reason": blocker_reason(item),
        "evidence": list(item.evidence.all()),
        "verifications": list(item.verifications.all()[:10]),
        "latest": item.verifications.first(),
        "history": list(item.sign_offs.filter(round__lt=item.round).order_by("-round", "signed_at")[:20])
        + list(item.sign_offs.filter(round=item.round, revoked_at__isnull=False)),
        "can_verify": can_respond and item.slug in VERIFIERS,
        "can_add_evidence": can_respond,
        "load_test_targets": load_test_targets() if item.slug == LOAD_TEST_ITEM else None,
        "can_mark_ready": can_respond and (item.status in (ItemStatus.OPEN, ItemStatus.REVOKED)
                                          or (item.status == ItemStatus.SIGNED_OFF and (item.expired or item.evidence_stale))),
        "can_sign_off": can_sign and item.status == ItemStatus.READY and not signed_by_me,
        "signed_by_me": signed_by_me,
        "can_revoke": can_sign and item.status in (ItemStatus.READY, ItemStatus.SIGNED_OFF),
        "can_configure": can_sign,
        "is_preparer": item.ready_by_id == request.user.pk,
    })


def _done(request, item, ok_message, changed=True):
    if changed:
        messages.success(request, ok_message)
    else:
        messages.info(request, "Nothing changed: that was already done.")
    return redirect(item.get_absolute_url())


def _refused(request, item, exc: ChecklistError):
    if exc.code == "forbidden":
        return forbidden(request, exc.message)
    messages.error(request, exc.message)
    return redirect(item.get_absolute_url())


@require_POST
@perm_required(SIGN_OFF)
def sign_off(request, slug):
    item = _item(slug)
    try:
        expires_at = parse_expiry(request.POST.get("expires"))
        _, changed = item_sign_off(item=item, actor=request.user, note=request.POST.get("note", ""), expires_at=expires_at)
    except ChecklistError as exc:
        return _refused(request, item, exc)
    item.refresh_from_db()
    msg = "Signed off: the item is complete." if item.status == ItemStatus.SIGNED_OFF else "Your signature is recorded; another signature is needed."
    return _done(request, item, msg, changed)


@require_POST
@perm_required(SIGN_OFF)
def revoke(request, slug):
    item = _item(slug)
    try:
        _, changed = item_revoke(item=item, actor=request.user, reason=request.POST.get("reason", ""))
    except ChecklistError as exc:
        return _refused(request, item, exc)
    return _done(request, item, "Sign-off revoked.", changed)


@require_POST
@perm_required(RESPOND)
def mark_ready(request, slug):
    item = _item(slug)
    try:
        _, changed = item_mark_ready(item=item, actor=request.user, note=request.POST.get("note", ""))
    except ChecklistError as exc:
        return _refused(request, item, exc)
    return _done(request, item, "Marked ready for sign-off.", changed)


@require_POST
@perm_required(RESPOND)
def add_evidence(request, slug):
    item = _item(slug)
    kind = request.POST.get("kind", "")
    try:
        evidence_add(item=item, actor=request.user, kind=kind, text=request.POST.get("text", ""),
                     url=request.POST.get("url", ""), upload=request.FILES.get("file"))
    except ChecklistError as exc:
        return _refused(request, item, exc)
    return _done(request, item, "Evidence added.")


@require_POST
@perm_required(RESPOND)
def load_test(request, slug):
    """A k6 / Locust result file, uploaded or fetched from a URL, judged against the plan and kept as evidence."""
    item = _item(slug)
    upload = request.FILES.get("file")
    url = (request.POST.get("url") or "").strip()
    try:
        if upload is not None:
            if upload.size is not None and upload.size > MAX_FILE_BYTES:
                raise ChecklistError("invalid", f"{upload.name}: the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
            _, verdict = evidence_add_load_test(item=item, actor=request.user, content=upload.read(), file_name=upload.name or "")
        elif url:
            env = Environment.objects.filter(name=_default_env()).first()
            _, verdict = evidence_fetch_load_test(item=item, actor=request.user, url=url, environment=env)
        else:
            raise ChecklistError("invalid", "choose a k6 or Locust result file, or give the URL to fetch it from")
    except ChecklistError as exc:
        return _refused(request, item, exc)
    (messages.success if verdict.passed else messages.warning)(request, verdict.summary)
    return redirect(item.get_absolute_url())


@require_POST
@perm_required(RESPOND)
def verify_now(request, slug):
    item = _item(slug)
    if slug not in VERIFIERS:
        messages.error(request, "The cloud cannot answer this item; people sign it off.")
        return redirect(item.get_absolute_url())
    env = Environment.objects.filter(name=request.POST.get("environment") or _default_env()).first()
    if env is None:
        messages.error(request, "No cloud environment is registered to verify against (run manage.py sandbox).")
        return redirect(item.get_absolute_url())
    result = run_check(slug, env)
    verification_record(item=item, outcome=result.outcome, summary=result.summary, evidence=result.evidence,
                        triggered_by=request.user.get_username(), environment_name=env.name)
    messages.success(request, f"Verified against {env.name}: {result.summary}")
    return redirect(item.get_absolute_url())


@require_POST
@perm_required(RESPOND)
def verify_all(request):
    enqueue("portal.checklist.tasks.checklist_verify", triggered_by=request.user.get_username())
    messages.success(request, "The automated verifications are running; results appear on each item.")
    return redirect("checklist:board")


@require_POST
@perm_required(SIGN_OFF)
def configure(request, slug):
    item = _item(slug)
    try:
        required = int(request.POST.get("required_signers", item.required_signers))
        days_raw = (request.POST.get("attestation_days") or "").strip()
        days = int(days_raw) if days_raw else None
    except ValueError:
        messages.error(request, "Signers and expiry days must be whole numbers.")
        return redirect(item.get_absolute_url())
    try:
        _, changed = item_configure(item=item, actor=request.user, required_signers=required, attestation_days=days, owner=item.owner)
    except ChecklistError as exc:
        return _refused(request, item, exc)
    return _done(request, item, "Sign-off rules saved.", changed)


@require_GET
@perm_required(VIEW)
def evidence_file(request, slug, public_id):
    ev = get_object_or_404(Evidence, public_id=public_id, item__slug=slug, kind=Evidence.Kind.FILE)
    if not ev.file or not default_storage.exists(ev.file.name):
        raise Http404("the file is gone from storage")
    return FileResponse(default_storage.open(ev.file.name, "rb"), as_attachment=True, filename=ev.file_name or "evidence")


def _default_env() -> str:
    return settings.DEFAULT_ENVIRONMENT
