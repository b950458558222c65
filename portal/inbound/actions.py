"""What a person can do from a page, whichever channel it came from (SMS, voice, an email link, Slack):
acknowledge, resolve or escalate one incident as themselves, through the incidents' own services, with
the channel on the timeline and in the audit row ("Acknowledged via SMS")."""

from __future__ import annotations

from dataclasses import dataclass

from portal.accounts.roles import RESPOND
from portal.actors import Actor
from portal.errors import Forbidden
from portal.incidents import escalation, services
from portal.incidents.models import Incident
from portal.incidents.paging import incident_ref

ACKNOWLEDGE, RESOLVE, ESCALATE = "acknowledge", "resolve", "escalate"
ACTIONS = (ACKNOWLEDGE, RESOLVE, ESCALATE)


class NotAllowed(Forbidden):
    """The person behind the answer may not respond to incidents (no responder role, or inactive)."""

    code = "not_allowed"


@dataclass(frozen=True)
class Outcome:
    changed: bool
    text: str  # what the answer tells the person: "Acknowledged INC-42 as alice"


def page_answer(*, incident: Incident, user, action: str, via: str) -> Outcome:
    """Act on `incident` as `user`. The services lock the incident's row, so an answer racing a click
    (or a second answer) is one acknowledgement; a state that refuses the action is an outcome, not an error."""
    assert action in ACTIONS
    if not user.is_active or not user.has_perm(RESPOND):
        raise NotAllowed(f"{user.get_username()} may not respond to incidents")
    actor, ref = Actor.of(user), incident_ref(incident)
    incident.refresh_from_db(fields=["status"])
    if action == ACKNOWLEDGE:
        if incident.status != Incident.Status.TRIGGERED:
            incident.refresh_from_db(fields=["acknowledged_by"])
            by = f" by {incident.acknowledged_by}" if incident.status == Incident.Status.ACKNOWLEDGED else ""
            return Outcome(False, f"{ref} is already {incident.status}{by}; nothing changed")
        try:
            done = services.incident_acknowledge(incident=incident, actor=actor, via=via)
        except services.InvalidTransition:
            return Outcome(False, f"{ref} is resolved; nothing changed")
        if done.acknowledged_by != actor.label:  # a click or another answer won the row lock first
            return Outcome(False, f"{ref} was acknowledged by {done.acknowledged_by} first; nothing changed")
        return Outcome(True, f"Acknowledged {ref} as {actor.label}")
    if action == RESOLVE:
        if incident.status == Incident.Status.RESOLVED:
            return Outcome(False, f"{ref} is already resolved; nothing changed")
        services.incident_resolve(incident=incident, actor=actor, reason=f"from a page via {via}", via=via)
        return Outcome(True, f"Resolved {ref} as {actor.label}")
    if incident.status != Incident.Status.TRIGGERED:
        return Outcome(False, f"{ref} is {incident.status}: only a triggered incident escalates; nothing changed")
    try:
        result = escalation.incident_escalate_now(incident=incident, actor=actor, reason=f"escalated by {actor.label} via {via}")
    except services.InvalidTransition:
        return Outcome(False, f"{ref} is resolved; nothing changed")
    if not result.level:
        return Outcome(False, f"{ref} has no further level to page; nothing changed")
    return Outcome(True, f"Escalated {ref} to level {result.level} as {actor.label}")
