"""Reads for the checklist: the board, one item, launch readiness."""

from __future__ import annotations

from dataclasses import dataclass, field

from django.db.models import Prefetch

from portal.checklist.models import ChecklistItem, ItemStatus, SignOff, VerificationOutcome


def items_for_board():
    """All items with their current-round signatures (two queries whatever the number of items)."""
    return ChecklistItem.objects.select_related("owner", "ready_by").prefetch_related(
        Prefetch("sign_offs", queryset=SignOff.objects.filter(revoked_at__isnull=True).order_by("signed_at"), to_attr="live_sign_offs")
    )


def current_signatures(item: ChecklistItem) -> list[SignOff]:
    live = getattr(item, "live_sign_offs", None)
    if live is None:
        live = list(item.sign_offs.filter(revoked_at__isnull=True).order_by("signed_at"))
    return [s for s in live if s.round == item.round]


def signature_progress(item: ChecklistItem) -> dict:
    sigs = current_signatures(item)
    keys = {s.signer_key for s in sigs}
    preparer = f"user:{item.ready_by_id}" if item.ready_by_id else None
    needs_other = bool(keys) and not (keys - {preparer})
    missing = max(item.required_signers - len(keys), 1 if needs_other else 0)
    return {"signatures": sigs, "count": len(keys), "required": item.required_signers, "missing": missing,
            "needs_other": needs_other, "preparer_key": preparer}


def blocker_reason(item: ChecklistItem) -> str:
    """Why an item does not count toward launch yet ('' when it does)."""
    if item.complete:
        return ""
    if item.status == ItemStatus.OPEN:
        return "open: evidence to gather and mark ready"
    if item.status == ItemStatus.REVOKED:
        return f"revoked: {item.revoke_reason}"
    if item.status == ItemStatus.READY:
        p = signature_progress(item)
        if p["needs_other"]:
            reason = "ready: needs a signature from someone other than the preparer"
        else:
            reason = f"ready: {p['count']} of {p['required']} signatures"
        if item.verifiable and item.verification_outcome == VerificationOutcome.FAILING:
            reason += "; the cloud check fails"
        return reason
    if item.evidence_stale:
        return "signed off, but the cloud no longer backs it: " + (item.verification_summary or "verification failing")
    if item.expired:
        return "sign-off expired: re-attest"
    if item.verifiable and item.verification_outcome == VerificationOutcome.FAILING:
        return "signed off, but the automated verification fails: " + item.verification_summary
    if item.verifiable and item.verification_outcome == VerificationOutcome.ERROR:
        return "signed off, but the cloud could not be checked: " + item.verification_summary
    if item.verifiable and not item.verified:
        return "signed off, not verified yet"
    return "not complete"


@dataclass
class Readiness:
    total: int = 0
    complete: int = 0
    signed_off: int = 0
    verifiable: int = 0
    verified: int = 0
    expired: int = 0
    stale: int = 0
    blockers: list[tuple[ChecklistItem, str]] = field(default_factory=list)
    items: list[ChecklistItem] = field(default_factory=list)

    @property
    def percent(self) -> int:
        return int(self.complete * 100 / self.total) if self.total else 0

    @property
    def go(self) -> bool:
        return self.total > 0 and self.complete == self.total

    def as_dict(self) -> dict:
        return {
            "percent": self.percent, "go": self.go, "total": self.total, "complete": self.complete,
            "signed_off": self.signed_off, "verifiable": self.verifiable, "verified": self.verified,
            "expired": self.expired, "evidence_stale": self.stale,
            "blockers": [{"slug": i.slug, "title": i.title, "reason": r} for i, r in self.blockers],
        }


def readiness(items=None) -> Readiness:
    items = list(items if items is not None else items_for_board())
    r = Readiness(total=len(items), items=items)
    for item in items:
        if item.complete:
            r.complete += 1
        else:
            r.blockers.append((item, blocker_reason(item)))
        if item.status == ItemStatus.SIGNED_OFF and not item.expired and not item.evidence_stale:
            r.signed_off += 1
        if item.verifiable:
            r.verifiable += 1
            if item.verified:
                r.verified += 1
        if item.expired:
            r.expired += 1
        if item.evidence_stale:
            r.stale += 1
    return r


def item_detail(slug: str) -> ChecklistItem:
    return ChecklistItem.objects.select_related("owner", "ready_by").get(slug=slug)
