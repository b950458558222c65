"""An email page's acknowledge and resolve links.

The link carries a token signed by the portal (portal.incidents.paging.email_link_token: the page, the
action, when it was issued). The token is the credential, so no login session is needed, and it acts
as the page's person. It is single-use: the first POST stores the token's SHA-256 in an
EmailActionToken row (unique), in the same transaction as the action, so a second use (or two at once)
finds the row and does nothing. It is dead once the incident is resolved, and after LINK_HOURS.
A GET only shows what the link would do.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from django.core import signing
from django.db import IntegrityError, transaction
from django.utils import timezone

from portal.errors import NotFound
from portal.inbound.actions import Outcome, page_answer
from portal.inbound.models import EmailActionToken
from portal.incidents.models import Incident, PersonalPage
from portal.incidents.paging import email_link_read

LINK_HOURS = 24
VIA = "email link"


class LinkDead(NotFound):
    """The link is not ours, too old, used already, or its incident is resolved."""

    code = "link_dead"


@dataclass(frozen=True)
class Link:
    token_hash: str
    page: PersonalPage
    action: str
    issued_at: datetime

    @property
    def incident(self) -> Incident:
        return self.page.incident


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_check(token: str, *, now: datetime | None = None) -> Link:
    """What a live link would do; LinkDead (with the reason in words) for any other."""
    now = now or timezone.now()
    try:
        page_id, action, issued = email_link_read(token, max_age_seconds=LINK_HOURS * 3600)
    except signing.SignatureExpired:
        raise LinkDead(f"This link expired (links work for {LINK_HOURS} hours).") from None
    except signing.BadSignature:
        raise LinkDead("This is not a link the portal sent.") from None
    issued_at = datetime.fromtimestamp(issued, tz=UTC)
    if now - issued_at > timedelta(hours=LINK_HOURS):
        raise LinkDead(f"This link expired (links work for {LINK_HOURS} hours).")
    page = PersonalPage.objects.select_related("incident", "incident__environment", "user").filter(public_id=page_id).first()
    if page is None:
        raise LinkDead("The page this link belongs to is gone.")
    digest = token_hash(token)
    if EmailActionToken.objects.filter(token_hash=digest).exists():
        raise LinkDead("This link was used already; each link works once.")
    if page.incident.status == Incident.Status.RESOLVED:
        raise LinkDead("The incident is resolved; its links no longer work.")
    return Link(token_hash=digest, page=page, action=action, issued_at=issued_at)


def link_use(token: str, *, now: datetime | None = None) -> Outcome:
    """Use a link once, as its page's person (the POST of the confirmation page)."""
    now = now or timezone.now()
    link = link_check(token, now=now)
    try:
        with transaction.atomic():
            EmailActionToken.objects.create(
                token_hash=link.token_hash, incident=link.incident, user=link.page.user, action=link.action,
                created_at=link.issued_at, expires_at=max(link.issued_at + timedelta(hours=LINK_HOURS), now + timedelta(seconds=1)),
                used_at=now)
            return page_answer(incident=link.incident, user=link.page.user, action=link.action, via=VIA)
    except IntegrityError:
        raise LinkDead("This link was used already; each link works once.") from None
